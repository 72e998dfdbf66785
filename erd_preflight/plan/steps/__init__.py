"""The typed steps of a plan, one module per family of kinds, and the union that registers them.

Adding a step kind: its model, SQL, phase, lock, primary check, example and parse rule go in its family's
module; it joins ``PlanStep`` and ``__all__`` here; its data checks are registered in ``checks``. The
registry test (tests/test_registry.py) fails until all of these exist.
"""

from typing import Annotated, Union

from pydantic import Field

from .base import ADD_CONSTRAINTS as ADD_CONSTRAINTS
from .base import ALTER_COMMANDS as ALTER_COMMANDS
from .base import DROP_OBJECTS as DROP_OBJECTS
from .base import STATEMENTS as STATEMENTS
from .base import ColumnsStep as ColumnsStep
from .base import ColumnStep as ColumnStep
from .base import Lock as Lock
from .base import PhaseName as PhaseName
from .base import Rel as Rel
from .base import Step as Step
from .base import TableStep as TableStep
from .base import Unmodelled as Unmodelled
from .base import deparse as deparse
from .base import names_of as names_of
from .base import parses as parses
from .base import rel_of as rel_of
from .columns import AddColumn, AlterColumnType, DropColumn, DropNotNull, SetNotNull
from .constraints import (
    AddCheck,
    AddExclude,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    DropConstraint,
    ExcludeElement,
    ValidateConstraint,
)
from .indexes import CreateIndex, DropIndex
from .indexes import drop_index_concurrently as drop_index_concurrently
from .indexes import index_name as index_name
from .online import ONLINE_KINDS as ONLINE_KINDS
from .online import OnlinePiece as OnlinePiece
from .online import add_check_online as add_check_online
from .online import add_unique_online as add_unique_online
from .online import not_null_check_name as not_null_check_name
from .online import not_null_constraint_name as not_null_constraint_name
from .online import set_not_null_online_18 as set_not_null_online_18
from .online import set_not_null_online as set_not_null_online
from .raw import RawSQL
from .raw import outside_transaction as outside_transaction
from .tables import ColumnDefinition, CreateTable, DropTable

PlanStep = Annotated[
    Union[
        CreateTable,
        AddColumn,
        SetNotNull,
        DropNotNull,
        AlterColumnType,
        AddUnique,
        AddUniqueUsingIndex,
        CreateIndex,
        AddForeignKey,
        AddCheck,
        AddExclude,
        ValidateConstraint,
        DropColumn,
        DropTable,
        DropConstraint,
        DropIndex,
        RawSQL,
    ],
    Field(discriminator="kind"),
]

# The public step models: ``from erd_preflight import *`` exports them (erd_preflight.__all__ includes these).
__all__ = [
    "AddCheck",
    "AddColumn",
    "AddExclude",
    "AddForeignKey",
    "AddUnique",
    "AddUniqueUsingIndex",
    "AlterColumnType",
    "ColumnDefinition",
    "CreateIndex",
    "CreateTable",
    "DropColumn",
    "DropConstraint",
    "DropIndex",
    "DropNotNull",
    "DropTable",
    "ExcludeElement",
    "PlanStep",
    "RawSQL",
    "SetNotNull",
    "ValidateConstraint",
]
