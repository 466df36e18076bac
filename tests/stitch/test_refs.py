from mesh_tools.stitch.refs import REF, explain_dbt_error


def refs(text: str):
    return [(m["project"], m["model"], m["version"]) for m in REF.finditer(text)]


def test_two_argument_refs_are_found_with_versions():
    sql = """
    select * from {{ ref('sales', 'fct_orders') }}
    join {{ ref("sales", "fct_orders", v=1) }}
    join {{ ref('sales','fct_orders', version='2') }}
    join {{ ref('local_model') }}
    """
    assert refs(sql) == [("sales", "fct_orders", None), ("sales", "fct_orders", "1"), ("sales", "fct_orders", "2")]


def test_unit_test_inputs_are_found():
    assert refs("      - input: ref('shop', 'orders')\n") == [("shop", "orders", None)]


def test_unknown_dbt_errors_are_left_alone():
    assert explain_dbt_error("Compilation Error: something else", {}) is None
