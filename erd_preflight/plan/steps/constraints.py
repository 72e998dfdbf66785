"""Step kinds on table constraints: UNIQUE / PRIMARY KEY (also USING INDEX), FOREIGN KEY, CHECK, VALIDATE and
DROP CONSTRAINT."""

from __future__ import annotations

import re
from typing import Any, Literal

from pglast import ast, enums
from psycopg import sql
from pydantic import ConfigDict, Field, field_validator

from ...report.contract import CHECK_CONSTRAINT_PRECHECK, EXCLUSION_PRECHECK, FK_VIOLATIONS_PRECHECK, UNIQUE_PRECHECK, TargetRef
from ...sqlparse import normalize_expression
from ..names import Refusing, check_identifier, display_name, ident, idents, qualified_text
from .base import (
    ADD_CONSTRAINTS,
    ALTER_COMMANDS,
    ColumnsStep,
    Lock,
    PhaseName,
    Rel,
    TableStep,
    Unmodelled,
    constraint_name,
    deparse,
    drop_tail,
    names_before,
    names_of,
    parses,
    rel_of,
)

_CT = enums.ConstrType


class AddUnique(ColumnsStep):
    """ADD [CONSTRAINT name] UNIQUE [NULLS NOT DISTINCT] (columns), or PRIMARY KEY (columns)."""

    kind: Literal["add_unique"] = "add_unique"
    name: str | None = None
    nulls_not_distinct: bool = False
    primary_key: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "a full scan and sort to build the unique index")
    PRIMARY_CHECK = UNIQUE_PRECHECK
    EXAMPLE = "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE NULLS NOT DISTINCT (a, b)"

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))

    def composed(self) -> sql.Composed:
        if self.primary_key:
            body = sql.SQL("PRIMARY KEY ({})").format(idents(self.columns))
        else:
            nnd = sql.SQL("NULLS NOT DISTINCT ") if self.nulls_not_distinct else sql.SQL("")
            body = sql.SQL("UNIQUE {}({})").format(nnd, idents(self.columns))
        return self._alter(sql.SQL("ADD {}{}").format(constraint_name(self.name), body))

    def summary(self) -> str:
        what = "primary key" if self.primary_key else "unique constraint"
        return f"add {what} on {self.qualified}({self.columns_text})"


class AddUniqueUsingIndex(TableStep):
    """ADD CONSTRAINT name UNIQUE | PRIMARY KEY USING INDEX index: turns an existing unique index (built
    CONCURRENTLY beforehand) into a constraint, a catalog change without a scan (a primary key also sets
    NOT NULL, which scans unless the columns are NOT NULL already). The index takes the constraint's name."""

    kind: Literal["add_unique_using_index"] = "add_unique_using_index"
    index: str
    name: str | None = None
    primary_key: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "a brief catalog change: the index already exists")
    EXAMPLE = "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_id_idx"

    _name = field_validator("name", "index")(classmethod(lambda cls, v: check_identifier(v)))

    @property
    def constraint_name(self) -> str:
        """Without a name, PostgreSQL names the constraint after the index."""
        return self.name or self.index

    def composed(self) -> sql.Composed:
        what = sql.SQL("PRIMARY KEY") if self.primary_key else sql.SQL("UNIQUE")
        return self._alter(sql.SQL("ADD {}{} USING INDEX {}").format(
            constraint_name(self.name), what, sql.Identifier(self.index)))

    def summary(self) -> str:
        what = "primary key" if self.primary_key else "unique constraint"
        return f"add {what} {display_name(self.constraint_name)} on {self.qualified} using index " \
            f"{display_name(self.index)}"

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.constraint_name)

    def phase(self) -> PhaseName:
        return "C"  # after phase B, which builds the index concurrently

    def object_name(self) -> str | None:
        return self.constraint_name


@parses(ADD_CONSTRAINTS, _CT.CONSTR_UNIQUE, _CT.CONSTR_PRIMARY)
def _unique(rel: Rel, c: ast.Constraint) -> AddUnique | AddUniqueUsingIndex:
    name = {"name": c.conname} if c.conname else {}
    if c.indexname:
        return AddUniqueUsingIndex(**rel, **name, index=c.indexname, primary_key=c.contype == _CT.CONSTR_PRIMARY)
    if c.including or c.options or c.indexspace or c.without_overlaps:
        raise Unmodelled("a unique constraint with INCLUDE, WITH or WITHOUT OVERLAPS")
    return AddUnique(**rel, **name, columns=names_of(c.keys), nulls_not_distinct=bool(c.nulls_not_distinct),
                     primary_key=c.contype == _CT.CONSTR_PRIMARY)


_FK_ACTION = Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"]
_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


class AddForeignKey(ColumnsStep):
    kind: Literal["add_foreign_key"] = "add_foreign_key"
    name: str | None = None
    ref_schema: str | None = None
    ref_table: str
    ref_columns: tuple[str, ...] = Field(min_length=1)
    not_valid: bool = False
    match_full: bool = False
    on_delete: _FK_ACTION = "NO ACTION"
    on_update: _FK_ACTION = "NO ACTION"

    LOCK = ("SHARE ROW EXCLUSIVE on both tables", "a full scan of the referencing table")
    PRIMARY_CHECK = FK_VIOLATIONS_PRECHECK
    EXAMPLE = "ALTER TABLE t ADD CONSTRAINT t_p_fkey FOREIGN KEY (p) REFERENCES s.p (id) ON DELETE CASCADE NOT VALID"

    _name = field_validator("name", "ref_schema", "ref_table")(classmethod(lambda cls, v: check_identifier(v)))
    _refs = field_validator("ref_columns", mode="before")(classmethod(lambda cls, v: names_before(v)))

    @field_validator("ref_columns")
    @classmethod
    def _same_width(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        for v in value:
            check_identifier(v)
        columns = info.data.get("columns")
        if columns is not None and len(columns) != len(value):
            raise ValueError(
                f"the foreign key has {len(columns)} referencing column(s) but {len(value)} referenced column(s)"
            )
        return value

    @property
    def ref_relation(self) -> sql.Identifier:
        return ident(self.ref_schema, self.ref_table)

    def composed(self) -> sql.Composed:
        tail: list[sql.Composable] = []
        if self.match_full:
            tail.append(sql.SQL(" MATCH FULL"))
        if self.on_update != "NO ACTION":
            tail.append(sql.SQL(" ON UPDATE " + self.on_update))
        if self.on_delete != "NO ACTION":
            tail.append(sql.SQL(" ON DELETE " + self.on_delete))
        if self.not_valid:
            tail.append(sql.SQL(" NOT VALID"))
        return self._alter(
            sql.SQL("ADD {}FOREIGN KEY ({}) REFERENCES {} ({}){}").format(
                constraint_name(self.name),
                idents(self.columns),
                self.ref_relation,
                idents(self.ref_columns),
                sql.Composed(tail),
            )
        )

    def summary(self) -> str:
        ref = qualified_text(self.ref_schema, self.ref_table)
        nv = " NOT VALID" if self.not_valid else ""
        return f"add foreign key {self.qualified}({self.columns_text}) → {ref}({', '.join(display_name(c) for c in self.ref_columns)}){nv}"

    def target(self) -> TargetRef:
        return TargetRef(
            kind="relationship",
            schema=self.schema_,
            table=self.table,
            columns=self.columns,
            ref_schema=self.ref_schema,
            ref_table=self.ref_table,
            ref_columns=self.ref_columns,
            name=self.name,
        )

    def tables(self) -> tuple[tuple[str | None, str], ...]:
        return ((self.schema_, self.table), (self.ref_schema, self.ref_table))

    def phase(self) -> PhaseName:
        return "C"  # after the indexes of phase B, which it may use

    def lock(self) -> Lock:
        return ("SHARE ROW EXCLUSIVE on both tables", "no scan (NOT VALID)") if self.not_valid else self.LOCK

    def object_name(self) -> str | None:
        return self.name


@parses(ADD_CONSTRAINTS, _CT.CONSTR_FOREIGN)
def _foreign_key(rel: Rel, c: ast.Constraint) -> AddForeignKey:
    if c.fk_matchtype == "p" or c.fk_with_period or c.fk_del_set_cols:
        raise Unmodelled("a foreign key with MATCH PARTIAL, PERIOD or ON DELETE SET (columns)")
    if not c.pk_attrs:
        raise Unmodelled("a foreign key without its referenced columns")
    name = {"name": c.conname} if c.conname else {}
    return AddForeignKey(
        **rel, **name, columns=names_of(c.fk_attrs), **{("ref_" + k): v for k, v in rel_of(c.pktable).items()},
        ref_columns=names_of(c.pk_attrs), not_valid=bool(c.skip_validation), match_full=c.fk_matchtype == "f",
        on_delete=_FK_ACTIONS[c.fk_del_action or "a"], on_update=_FK_ACTIONS[c.fk_upd_action or "a"],
    )


class AddCheck(TableStep):
    kind: Literal["add_check"] = "add_check"
    name: str | None = None
    expression: str
    not_valid: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "a full scan to verify the expression")
    PRIMARY_CHECK = CHECK_CONSTRAINT_PRECHECK
    EXAMPLE = "ALTER TABLE t ADD CONSTRAINT positive CHECK (a > 0) NOT VALID"

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))
    _expr = field_validator("expression")(classmethod(lambda cls, v: normalize_expression(v)))

    def composed(self) -> sql.Composed:
        nv = sql.SQL(" NOT VALID") if self.not_valid else sql.SQL("")
        return self._alter(
            sql.SQL("ADD {}CHECK ({}){}").format(constraint_name(self.name), sql.SQL(self.expression), nv)
        )

    def summary(self) -> str:
        return f"add check ({self.expression}) on {self.qualified}" + (" NOT VALID" if self.not_valid else "")

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.name)

    def lock(self) -> Lock:
        return ("ACCESS EXCLUSIVE", "no scan (NOT VALID)") if self.not_valid else self.LOCK


@parses(ADD_CONSTRAINTS, _CT.CONSTR_CHECK)
def _check(rel: Rel, c: ast.Constraint) -> AddCheck:
    if c.is_no_inherit:
        raise Unmodelled("a CHECK constraint with NO INHERIT")
    name = {"name": c.conname} if c.conname else {}
    return AddCheck(**rel, **name, expression=deparse(c.raw_expr), not_valid=bool(c.skip_validation))


_OPERATOR = re.compile(r"^[-+*/<>=~!@#%^&|`?]{1,63}$")


class ExcludeElement(Refusing):
    """One element of an EXCLUDE constraint: a column and the operator two rows may not both satisfy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    operator: str

    _column = field_validator("column")(classmethod(lambda cls, v: check_identifier(v)))

    @field_validator("operator")
    @classmethod
    def _operator(cls, value: str) -> str:
        if not _OPERATOR.match(value):
            raise ValueError(f"exclusion operator {value!r} is not an operator such as =, && or <>")
        return value


class AddExclude(TableStep):
    """ADD [CONSTRAINT name] EXCLUDE USING method (column WITH operator, ...) [WHERE (predicate)]: no two rows
    may have every element's operator true between them (rows where the predicate is not true are left out)."""

    kind: Literal["add_exclude"] = "add_exclude"
    name: str | None = None
    method: str = "gist"
    elements: tuple[ExcludeElement, ...] = Field(min_length=1)
    where: str | None = None

    LOCK = ("ACCESS EXCLUSIVE", "a full scan to build the exclusion index, checking each row against the others")
    PRIMARY_CHECK = EXCLUSION_PRECHECK
    EXAMPLE = "ALTER TABLE t ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&) WHERE (active)"

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))
    _where = field_validator("where")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"index method {value!r} is not a plain name such as gist, btree, hash, spgist")
        return value.lower()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(e.column for e in self.elements)

    def composed(self) -> sql.Composed:
        elements = sql.SQL(", ").join(sql.SQL("{} WITH {}").format(sql.Identifier(e.column), sql.SQL(e.operator))
                                      for e in self.elements)
        where = sql.SQL(" WHERE ({})").format(sql.SQL(self.where)) if self.where else sql.SQL("")
        return self._alter(sql.SQL("ADD {}EXCLUDE USING {} ({}){}").format(
            constraint_name(self.name), sql.Identifier(self.method), elements, where))

    def summary(self) -> str:
        shown = ", ".join(f"{display_name(e.column)} WITH {e.operator}" for e in self.elements)
        return f"add exclusion constraint on {self.qualified} ({shown})" + (f" where {self.where}" if self.where else "")

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, columns=self.columns,
                         name=self.name)

    def object_name(self) -> str | None:
        return self.name


@parses(ADD_CONSTRAINTS, _CT.CONSTR_EXCLUSION)
def _exclude(rel: Rel, c: ast.Constraint) -> AddExclude:
    if c.including or c.options or c.indexspace:
        raise Unmodelled("an exclusion constraint with INCLUDE, WITH or USING INDEX TABLESPACE")
    elements = []
    for elem, operator in c.exclusions:
        names = names_of(operator)
        if elem.name is None or elem.collation or elem.opclass or elem.ordering or elem.nulls_ordering or len(names) != 1:
            raise Unmodelled("an exclusion element that is an expression, or has an opclass, collation, ordering "
                             "or a schema-qualified operator")
        elements.append(ExcludeElement(column=elem.name, operator=names[0]))
    name = {"name": c.conname} if c.conname else {}
    where = {"where": deparse(c.where_clause)} if c.where_clause is not None else {}
    return AddExclude(**rel, **name, method=c.access_method or "btree", elements=tuple(elements), **where)


class ValidateConstraint(TableStep):
    kind: Literal["validate_constraint"] = "validate_constraint"
    name: str

    LOCK = ("SHARE UPDATE EXCLUSIVE", "a full scan; reads and writes go on")
    EXAMPLE = "ALTER TABLE t VALIDATE CONSTRAINT t_p_fkey"

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))

    def composed(self) -> sql.Composed:
        return self._alter(sql.SQL("VALIDATE CONSTRAINT {}").format(sql.Identifier(self.name)))

    def summary(self) -> str:
        return f"validate constraint {display_name(self.name)} on {self.qualified}"

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.name)

    def phase(self) -> PhaseName:
        return "C"

    def object_name(self) -> str | None:
        return self.name


@parses(ALTER_COMMANDS, enums.AlterTableType.AT_ValidateConstraint)
def _validate(rel: Rel, cmd: ast.AlterTableCmd) -> ValidateConstraint:
    return ValidateConstraint(**rel, name=cmd.name)


class DropConstraint(TableStep):
    kind: Literal["drop_constraint"] = "drop_constraint"
    name: str
    if_exists: bool = False
    cascade: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "a catalog change")
    EXAMPLE = "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_a_key CASCADE"

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))

    def composed(self) -> sql.Composed:
        return self._alter(
            sql.SQL("DROP CONSTRAINT {}{}{}").format(
                sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""),
                sql.Identifier(self.name),
                drop_tail(self.cascade),
            )
        )

    def summary(self) -> str:
        return f"drop constraint {display_name(self.name)} on {self.qualified}"

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.name)


@parses(ALTER_COMMANDS, enums.AlterTableType.AT_DropConstraint)
def _drop_constraint(rel: Rel, cmd: ast.AlterTableCmd) -> DropConstraint:
    return DropConstraint(**rel, name=cmd.name, if_exists=bool(cmd.missing_ok),
                          cascade=cmd.behavior == enums.DropBehavior.DROP_CASCADE)
