from mesh_tools.core.graph import closure, find_cycle, invert, topological_order


def test_topological_order_puts_upstreams_first_and_is_stable():
    ups = {"marketing": {"customers", "sales"}, "finance": {"sales"}, "sales": set(), "customers": set()}
    assert topological_order(ups) == ["customers", "sales", "finance", "marketing"]


def test_find_cycle_returns_the_path():
    ups = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    cycle = find_cycle(ups)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_no_cycle():
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_closure_and_invert():
    ups = {"m": {"c", "s"}, "f": {"s"}, "s": set(), "c": set()}
    downs = invert(ups)
    assert closure(["s"], downs) == {"m", "f"}
    assert closure(["m"], ups) == {"c", "s"}
