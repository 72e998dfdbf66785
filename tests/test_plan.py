import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import erd_preflight as ep

HOSTILE = ['orders', 'Order Items', 'we"ird', "it's", 'select', 'ünïcødé_表', 'x' * 63, 'semi;colon', 'a b.c']

names = st.sampled_from(HOSTILE)
column_lists = st.lists(names, min_size=1, max_size=3, unique=True).map(tuple)
types = st.sampled_from(["integer", "bigint", "text", "numeric(12, 2)", "varchar(20)", "timestamp with time zone",
                         "boolean", "integer[]"])
expressions = st.sampled_from(["0", "'x'", "now()", "a > 0", "lower(b) <> ''", "CAST(c AS bigint)", "a IS NOT NULL"])
maybe = lambda s: st.none() | s  # noqa: E731

steps = st.one_of(
    st.builds(ep.AddColumn, schema=maybe(names), table=names, column=names, type=types, not_null=st.booleans(),
              default=maybe(expressions), if_not_exists=st.booleans()),
    st.builds(ep.SetNotNull, schema=maybe(names), table=names, column=names),
    st.builds(ep.DropNotNull, schema=maybe(names), table=names, column=names),
    st.builds(ep.AlterColumnType, schema=maybe(names), table=names, column=names, type=types, using=maybe(expressions)),
    st.builds(ep.AddUnique, schema=maybe(names), table=names, columns=column_lists, name=maybe(names),
              nulls_not_distinct=st.booleans()),
    st.builds(ep.AddUnique, schema=maybe(names), table=names, columns=column_lists, name=maybe(names),
              primary_key=st.just(True)),
    st.builds(ep.CreateIndex, schema=maybe(names), table=names, columns=column_lists, name=maybe(names),
              unique=st.booleans(), concurrently=st.booleans(),
              nulls_not_distinct=st.booleans(), where=maybe(expressions)),
    column_lists.flatmap(lambda cols: st.builds(
        ep.AddForeignKey, schema=maybe(names), table=names, columns=st.just(cols), name=maybe(names),
        ref_schema=maybe(names), ref_table=names,
        ref_columns=st.lists(names, min_size=len(cols), max_size=len(cols), unique=True).map(tuple),
        not_valid=st.booleans(), match_full=st.booleans(),
        on_delete=st.sampled_from(["NO ACTION", "CASCADE", "SET NULL"]))),
    st.builds(ep.CreateIndex, schema=maybe(names), table=names, columns=column_lists, name=names,
              if_not_exists=st.just(True), unique=st.booleans()),
    st.builds(ep.AddCheck, schema=maybe(names), table=names, name=maybe(names), expression=expressions,
              not_valid=st.booleans()),
    st.builds(ep.AddUniqueUsingIndex, schema=maybe(names), table=names, index=names, name=maybe(names),
              primary_key=st.booleans()),
    st.builds(ep.ValidateConstraint, schema=maybe(names), table=names, name=names),
    st.builds(ep.DropColumn, schema=maybe(names), table=names, column=names, if_exists=st.booleans(),
              cascade=st.booleans()),
    st.builds(ep.DropTable, schema=maybe(names), table=names, if_exists=st.booleans(), cascade=st.booleans()),
    st.builds(ep.DropConstraint, schema=maybe(names), table=names, name=names, if_exists=st.booleans()),
    st.builds(ep.DropIndex, schema=maybe(names), name=names, concurrently=st.booleans(), if_exists=st.booleans()),
    st.builds(ep.CreateTable, schema=maybe(names), table=names, if_not_exists=st.booleans(),
              columns=st.lists(st.builds(ep.ColumnDefinition, name=names, type=types, not_null=st.booleans(),
                                         default=maybe(expressions)), min_size=1, max_size=3,
                               unique_by=lambda c: c.name).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_every_modelled_step_parses_back_from_its_own_sql(step):
    plan = ep.MigrationPlan.from_sql(step.sql())
    assert plan.steps == (step,)


@given(st.lists(steps, min_size=1, max_size=5).map(tuple))
@settings(max_examples=50, deadline=None)
def test_same_steps_give_the_same_fingerprint_and_sql_round_trip_keeps_it(plan_steps):
    a, b = ep.MigrationPlan(steps=plan_steps), ep.MigrationPlan(steps=plan_steps)
    assert a.fingerprint == b.fingerprint
    assert ep.MigrationPlan.from_sql(a.sql()).fingerprint == a.fingerprint


def test_identifiers_are_quoted_never_pasted():
    step = ep.SetNotNull(table='x"; DROP TABLE users; --', column="a b")
    assert step.sql() == 'ALTER TABLE "x""; DROP TABLE users; --" ALTER COLUMN "a b" SET NOT NULL'


def test_identifier_longer_than_63_bytes_is_refused_with_the_reason():
    with pytest.raises(ep.PlanError, match="63"):
        ep.SetNotNull(table="é" * 32, column="a")


@pytest.mark.parametrize("bad", ["1); DROP TABLE x; --", "a, b", "(SELECT 1) AS x", ""])
def test_expression_must_be_a_single_expression(bad):
    with pytest.raises((ValidationError, ep.PlanError)):
        ep.AddCheck(table="t", expression=bad)


def test_type_must_be_a_type_name():
    with pytest.raises((ValidationError, ep.PlanError)):
        ep.AlterColumnType(table="t", column="a", type="int; DROP TABLE t")


def test_foreign_key_needs_as_many_referenced_columns_as_columns():
    with pytest.raises(ep.PlanError, match="referenced column"):
        ep.AddForeignKey(table="o", columns=("a", "b"), ref_table="p", ref_columns=("x",))


def test_syntax_error_names_line_and_column():
    with pytest.raises(ep.PlanError) as info:
        ep.MigrationPlan.from_sql("ALTER TABLE t ADD COLUMN a int;\n\nALTER TABLE t ALTR COLUMN a SET NOT NULL;")
    assert (info.value.line, info.value.column) == (3, 15)
    assert "line 3, column 15" in str(info.value)


def test_multi_command_alter_table_becomes_one_step_per_command_in_order():
    plan = ep.MigrationPlan.from_sql(
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL, ADD CONSTRAINT u UNIQUE (b), SET (fillfactor = 70)")
    assert [s.kind for s in plan.steps] == ["set_not_null", "add_unique", "raw"]
    assert plan.steps[2].sql() == "ALTER TABLE t SET (fillfactor = 70)"


def test_unmodelled_statement_becomes_raw_step_with_a_note_and_transactions_are_skipped():
    plan = ep.MigrationPlan.from_sql("BEGIN;\nUPDATE t SET a = 0 WHERE a IS NULL;\nCOMMIT;")
    assert [s.kind for s in plan.steps] == ["raw"]
    assert plan.steps[0].statement == "UPDATE t SET a = 0 WHERE a IS NULL"
    assert any("BEGIN skipped" in n for n in plan.notes) and any("raw SQL" in n for n in plan.notes)


def test_empty_migration_is_a_plan_error():
    with pytest.raises(ep.PlanError, match="empty"):
        ep.MigrationPlan.from_sql("  -- nothing\n")


def test_plan_is_validated_from_json_with_the_kind_discriminator():
    plan = ep.MigrationPlan.from_sql("ALTER TABLE s.t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES p (id) NOT VALID")
    again = ep.MigrationPlan.model_validate_json(plan.model_dump_json(by_alias=True))
    assert again == plan and again.fingerprint == plan.fingerprint
    with pytest.raises(ValidationError):
        ep.MigrationPlan.model_validate({"steps": [{"kind": "truncate", "table": "t"}]})


def test_a_plan_without_only_or_if_exists_keeps_the_json_and_fingerprint_it_had_before_they_were_modelled():
    """Runs store a plan's fingerprint: a new field of every ALTER TABLE step must not change it for the plans
    that do not use it (their JSON and repr stay as they were)."""
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL")
    assert plan.canonical_json() == '[{"column":"a","kind":"set_not_null","schema":null,"table":"t"}]'
    assert "only" not in repr(plan.steps[0]) and "if_exists" not in repr(plan.steps[0])
    only = ep.MigrationPlan.from_sql("ALTER TABLE IF EXISTS ONLY t ALTER COLUMN a SET NOT NULL")
    assert '"only":true' in only.canonical_json() and '"table_if_exists":true' in only.canonical_json()
    assert only.steps[0].sql() == 'ALTER TABLE IF EXISTS ONLY "t" ALTER COLUMN "a" SET NOT NULL'
    assert ep.MigrationPlan.model_validate_json(only.model_dump_json()).fingerprint == only.fingerprint
