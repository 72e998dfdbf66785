"""The report: the result contract users rely on, and its tables.

- ``contract``: ``PreflightReport`` and its findings, exactly the contract JSON (pydantic models); every layer
  speaks it, so it sits at the bottom beside the base;
- ``frames``: the same as pandas DataFrames and terminal text.

It imports the base only. A model's display methods (``_repr_html_``, ``*_styler``) import ``notebook.display``
lazily: the one edge that points up.
"""
