"""help() and inspect.signature see the parameters of the C types' methods: each method's
docstring starts with its text signature ("name($self, /, ...)\\n--\\n\\n"). A public method
added without one fails here, naming it."""
import inspect
import uuid

import pytest

import cloudfiles_store
from cloudfiles_store import CloudFilesStore, _core


def _c_methods(cls):
    """The public methods a C type defines itself (not inherited, no dunder)."""
    return sorted(name for name, attr in vars(cls).items()
                  if not name.startswith("_") and isinstance(attr, type(_core.Store.keys)))


C_METHODS = [(cls, name) for cls in (_core.Store, _core.Completions) for name in _c_methods(cls)]


def test_the_c_types_have_methods_to_check():
    # the collection above is not empty by accident (a change of descriptor type, say)
    assert {"getitems", "setitems", "get_range", "keys", "close"} <= set(_c_methods(_core.Store))
    assert {"get", "put", "drain"} <= set(_c_methods(_core.Completions))


@pytest.mark.parametrize(("cls", "name"), C_METHODS, ids=[f"{c.__name__}.{n}" for c, n in C_METHODS])
def test_every_public_c_method_has_a_signature_and_a_description(cls, name):
    method = getattr(cls, name)
    assert method.__text_signature__, f"{cls.__name__}.{name} has no __text_signature__"
    sig = inspect.signature(method)
    assert list(sig.parameters)[0] == "self"
    # the docstring goes on to say what it does, not only the signature
    assert method.__doc__ and len(method.__doc__.strip()) > 20, f"{cls.__name__}.{name}: no description"


def test_constructors_and_functions_have_signatures():
    sig = inspect.signature(CloudFilesStore)
    assert [(p.name, p.kind) for p in sig.parameters.values()] == [
        ("url", inspect.Parameter.POSITIONAL_ONLY), ("options", inspect.Parameter.VAR_KEYWORD)]
    assert str(inspect.signature(_core.Completions)) == "()"
    assert str(inspect.signature(cloudfiles_store.engine_stats)) == "()"


def test_signatures_show_the_documented_parameters():
    sig = {name: str(inspect.signature(getattr(CloudFilesStore, name)))
           for name in ("getitems", "get_range", "copy", "listdir", "setitems")}
    assert sig == {
        "getitems": "(self, /, keys, *, contexts=None, raw=False)",
        "get_range": "(self, /, key, start, end=None)",
        "copy": "(self, /, source, destination)",
        "listdir": "(self, /, path='')",
        "setitems": "(self, values, /, *, compress=None, level=None, raw=False, content_encoding=None,"
                    " content_type=None, cache_control=None, content_disposition=None, storage_class=None,"
                    " metadata=None)",
    }


def test_keyword_names_in_the_signatures_are_the_ones_accepted():
    """Every keyword a signature shows is accepted under that name."""
    s = CloudFilesStore(f"mem://sig-{uuid.uuid4().hex}")
    s["d/a"] = b"0123456789"
    assert s.getitems(keys=["d/a", "d/missing"], contexts=None) == {"d/a": b"0123456789"}
    assert s.get_range(key="d/a", start=2, end=4) == b"23"
    s.copy(source="d/a", destination="d/b")
    assert s.entries(prefix="d/") == [("d/a", 10), ("d/b", 10)]
    assert s.listdir(path="d") == ["a", "b"]
    assert s.getsize(path="d/a") == 10
    s.rmdir(path="d")
    assert list(s) == []
    with pytest.raises(TypeError):
        s.setitems(values={})  # positional-only, as its signature says


def test_help_shows_parameters():
    text = inspect.getdoc(CloudFilesStore.get_range)
    assert "KeyError" in text
    import pydoc
    rendered = pydoc.render_doc(CloudFilesStore.get_range, renderer=pydoc.plaintext)
    assert "get_range(self, /, key, start, end=None)" in rendered
