"""The notebook face: the HTML of every model (``display``) and the panels (``widgets``).

It sits on top of the library API and may import all of it. Nothing below imports it, except a model's display
methods, lazily.
"""
