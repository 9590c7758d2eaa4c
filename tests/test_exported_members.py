"""The public surface of ``feedback_monitor`` is exactly its ``__all__`` (as httpx guards it)."""

import importlib.metadata
import types

import feedback_monitor

INCLUDED_PRIVATE_MEMBERS = {"__version__"}


def test_all_imports_are_exported() -> None:
    public = {
        name
        for name, value in vars(feedback_monitor).items()
        # Submodules become attributes of the package once imported anywhere; they are not
        # what __all__ is about.
        if (not name.startswith("_") or name in INCLUDED_PRIVATE_MEMBERS)
        and not isinstance(value, types.ModuleType)
    }
    assert len(feedback_monitor.__all__) == len(set(feedback_monitor.__all__))
    assert set(feedback_monitor.__all__) == public


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from feedback_monitor import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(feedback_monitor.__all__)


def test_exported_objects_are_our_own() -> None:
    for name in set(feedback_monitor.__all__) - INCLUDED_PRIVATE_MEMBERS:
        module = getattr(feedback_monitor, name).__module__
        assert module.startswith("feedback_monitor."), (name, module)


def test_version_matches_the_installed_distribution() -> None:
    assert feedback_monitor.__version__ == importlib.metadata.version("feedback-monitor")


def test_the_client_module_exports_its_public_surface() -> None:
    import feedback_monitor.client as client

    defined_here = {
        name
        for name, value in vars(client).items()
        if not name.startswith("_")
        and isinstance(value, type)
        and value.__module__ == "feedback_monitor.client"
    }
    assert len(client.__all__) == len(set(client.__all__))
    assert all(hasattr(client, name) for name in client.__all__)
    assert defined_here <= set(client.__all__)
