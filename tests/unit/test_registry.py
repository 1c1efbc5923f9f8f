"""Routing: discovery, folder cross-checks and every RoutingError case (no server)."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from beanie import Document, Link

from insightdb import AdminDocument, ConfigurationError, CustomerDocument, RoutingError
from insightdb.runtime.discovery import discover_models
from insightdb.runtime.registry import build_registry


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> str:
    """Write a fresh, uniquely named model package and return its name."""
    name = f"models_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    for relative, source in {"__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root and not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_discovery_routes_by_base_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "admin/user.py": """
                from insightdb import AdminDocument
                class PlatformUser(AdminDocument):
                    email: str
                    class Settings:
                        name = "users"
            """,
            "customer/project.py": """
                from insightdb import CustomerDocument
                class Project(CustomerDocument):
                    title: str
            """,
            "customer/nested/deep.py": """
                from insightdb import CustomerDocument
                class Invoice(CustomerDocument):
                    total: int
            """,
        },
    )
    registry = build_registry(packages=[package])
    table = {(r.name, r.group, r.collection) for r in registry}
    assert table == {
        ("PlatformUser", "admin", "users"),
        ("Project", "customer", "Project"),
        ("Invoice", "customer", "Invoice"),
    }
    assert [m.__name__ for m in registry.models("admin")] == ["PlatformUser"]
    assert {m.__name__ for m in registry.models("customer")} == {"Project", "Invoice"}


def test_imported_models_are_not_counted_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "admin/user.py": """
                from insightdb import AdminDocument
                class Member(AdminDocument):
                    email: str
            """,
            "admin/__init__.py": "from .user import Member\n",
        },
    )
    assert [m.__name__ for m in discover_models([package])] == ["Member"]


def test_model_in_the_wrong_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "admin/misplaced.py": """
                from insightdb import CustomerDocument
                class Misplaced(CustomerDocument):
                    x: int
            """
        },
    )
    with pytest.raises(
        RoutingError,
        match=r"^Misplaced is defined under 'admin'.*derives from "
        r"CustomerDocument: move it to the customer folder",
    ):
        build_registry(packages=[package])


def test_model_with_no_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "customer/plain.py": """
                from beanie import Document
                class Plain(Document):
                    x: int
            """
        },
    )
    with pytest.raises(RoutingError, match=r"^Plain \(.*\) has no database group: derive it from"):
        build_registry(packages=[package])


def test_model_in_both_groups() -> None:
    class Both(AdminDocument, CustomerDocument):  # type: ignore[misc]
        x: int = 0

    with pytest.raises(RoutingError, match=r"^Both derives from both AdminDocument and Customer"):
        build_registry(models=[Both])


def test_link_across_groups() -> None:
    class Account(AdminDocument):
        email: str

    class Order(CustomerDocument):
        owner: Link[Account]

    with pytest.raises(
        RoutingError,
        match=r"^Order\.owner links to Account, which lives in the admin database while Order "
        r"lives in customer",
    ):
        build_registry(models=[Account, Order])


def test_link_across_groups_inside_a_list_and_optional() -> None:
    class Tag(CustomerDocument):
        label: str

    class Post(AdminDocument):
        tags: list[Link[Tag]] | None = None

    with pytest.raises(RoutingError, match=r"^Post\.tags links to Tag"):
        build_registry(models=[Tag, Post])


def test_link_within_a_group_is_fine() -> None:
    class Team(CustomerDocument):
        name: str

    class Member(CustomerDocument):
        team: Link[Team]

    registry = build_registry(models=[Team, Member])
    assert {r.name for r in registry} == {"Team", "Member"}


def test_two_models_with_one_name() -> None:
    def make() -> type[Document]:
        class Twin(AdminDocument):
            x: int = 0

        return Twin

    with pytest.raises(RoutingError, match=r"^two models are named Twin"):
        build_registry(models=[make(), make()])


def test_two_models_in_one_collection() -> None:
    class First(CustomerDocument):
        class Settings:
            name = "things"

    class Second(CustomerDocument):
        class Settings:
            name = "things"

    with pytest.raises(RoutingError, match=r"^Second and First both use collection 'things'"):
        build_registry(models=[First, Second])


def test_missing_package() -> None:
    with pytest.raises(
        RoutingError, match=r"^model package 'no_such_models_pkg' can't be imported"
    ):
        build_registry(packages=["no_such_models_pkg"])


def test_broken_module_names_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _package(tmp_path, monkeypatch, {"admin/broken.py": "import not_a_module_xyz\n"})
    with pytest.raises(RoutingError, match=rf"^model module '{package}\.admin\.broken' can't"):
        build_registry(packages=[package])


def test_unrouted_model_lookup() -> None:
    class Lonely(AdminDocument):
        x: int = 0

    registry = build_registry(models=[])
    with pytest.raises(RoutingError, match=r"^Lonely is not routed"):
        registry.route(Lonely)
    with pytest.raises(RoutingError, match=r"^unknown group 'billing'"):
        registry.models("billing")


def test_unique_index_of_a_tenant_scoped_model_must_include_tenant_id() -> None:
    import pymongo
    from beanie import Indexed

    from insightdb import TenantScoped

    class PerTenantEmail(TenantScoped, CustomerDocument):
        email: str

        class Settings:
            indexes = (pymongo.IndexModel([("tenant_id", 1), ("email", 1)], unique=True),)

    class GlobalEmail(TenantScoped, CustomerDocument):
        email: Indexed(str, unique=True)  # type: ignore[valid-type]

    class GlobalSlug(TenantScoped, CustomerDocument):
        slug: str

        class Settings:
            indexes = (pymongo.IndexModel([("slug", 1)], unique=True, name="slug_global"),)

    class AllowedGlobal(TenantScoped, CustomerDocument):
        code: Indexed(str, unique=True)  # type: ignore[valid-type]
        __tenant_global_unique__ = ("code_1",)

    assert len(build_registry(models=[PerTenantEmail, AllowedGlobal])) == 2
    with pytest.raises(RoutingError, match=r"^GlobalEmail: unique index 'email_1' on email is"):
        build_registry(models=[GlobalEmail])
    with pytest.raises(RoutingError, match=r"^GlobalSlug: unique index 'slug_global' on slug"):
        build_registry(models=[GlobalSlug])


def test_tenant_scoped_admin_model_is_refused() -> None:
    from insightdb import TenantScoped

    class ScopedAdmin(TenantScoped, AdminDocument):
        x: int = 0

    with pytest.raises(RoutingError, match=r"^ScopedAdmin is TenantScoped but lives in the admin"):
        build_registry(models=[ScopedAdmin])


# models= forms and import failures ----------------------------------------------------


_FORMS_FILES = {
    "admin/user.py": """
        from insightdb import AdminDocument
        class FormUser(AdminDocument):
            email: str
    """,
    "admin/plan.py": """
        from insightdb import AdminDocument
        class FormPlan(AdminDocument):
            title: str
    """,
    "customer/order.py": """
        from insightdb import CustomerDocument
        class FormOrder(CustomerDocument):
            total: int
    """,
}


def test_models_takes_classes_class_paths_modules_and_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    package = _package(tmp_path, monkeypatch, _FORMS_FILES)
    plan_module = importlib.import_module(f"{package}.admin.plan")
    user_class = importlib.import_module(f"{package}.admin.user").FormUser
    registry = build_registry(
        packages=["elsewhere"],
        models=[
            f"{package}.admin.user.FormUser",  # a dotted class path, as init_beanie takes
            plan_module,  # a module
            f"{package}.customer",  # a package name: discovered like the models setting
            user_class,  # a class, again: each model once
        ],
    )
    assert [(r.name, r.group) for r in registry] == [
        ("FormUser", "admin"),
        ("FormPlan", "admin"),
        ("FormOrder", "customer"),
    ]
    everything = build_registry(packages=["elsewhere"], models=[package])
    assert {r.name for r in everything} == {"FormUser", "FormPlan", "FormOrder"}


def test_a_package_given_in_models_is_folder_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "admin/misplaced.py": """
                from insightdb import CustomerDocument
                class Misplaced(CustomerDocument):
                    x: int = 0
            """
        },
    )
    for spec in (package, f"{package}.admin"):
        with pytest.raises(RoutingError, match=r"^Misplaced is defined under 'admin'"):
            build_registry(packages=["elsewhere"], models=[spec])


def test_models_refuses_anything_else_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import BaseModel

    package = _package(tmp_path, monkeypatch, _FORMS_FILES)

    class NotADocument(BaseModel):
        x: int = 0

    class Secretive(BaseModel):
        password: str

    expected_start = "init(models=...): "
    cases: list[tuple[object, str]] = [
        (42, "got a int object; expected a model class, a dotted class path"),
        (None, "got a NoneType object"),
        ("", "got a str object"),
        (Secretive(password="hunter2-value"), "got a Secretive object"),
        (NotADocument, "test_registry.test_models_refuses_anything_else_in_one_line.<locals>"),
        (AdminDocument, "AdminDocument is a base class; pass the models derived from it"),
        (Document, "Document is a base class"),
        ("no_such_pkg_xyz.models.User", "'no_such_pkg_xyz.models.User' is neither an importable"),
        (f"{package}.admin.user.Nope", "names nothing: no module of that name, and module"),
        (f"{package}.admin.user.AdminDocument", "AdminDocument is a base class"),
        ("os.sep", "'os.sep' is a str object, not a model class"),
    ]
    for spec, fragment in cases:
        with pytest.raises(RoutingError) as caught:
            build_registry(models=[spec])  # type: ignore[list-item]
        message = str(caught.value)
        assert message.startswith(expected_start), message
        assert fragment in message, message
        assert "\n" not in message
        assert "hunter2" not in message


@pytest.mark.parametrize(
    ("source", "line", "error"),
    [
        ("x = 1\ndef broken(:\n    pass\n", 2, "SyntaxError: invalid syntax"),
        (
            "from insightdb import AdminDocument\n\nclass A(AdminDocument):\n    x: Missing\n",
            4,
            "NameError: name 'Missing' is not defined",
        ),
        ("\n\nraise RuntimeError('boom\\nsecond line')\n", 3, "RuntimeError: boom"),
        ("\nvalue = 1 / 0\n", 2, "ZeroDivisionError: division by zero"),
        ("import not_a_module_xyz\n", 1, "ModuleNotFoundError: No module named 'not_a_module_xyz'"),
        ("if True:\n  a = 1\n    b = 2\n", 3, "IndentationError: unexpected indent"),
    ],
)
def test_a_failing_model_module_is_one_line_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, line: int, error: str
) -> None:
    monkeypatch.chdir(tmp_path)  # file paths are shown relative to the working directory
    package = _package(tmp_path, monkeypatch, {"admin/broken.py": source})
    expected = (
        f"model module '{package}.admin.broken' can't be imported: "
        f"{package}/admin/broken.py:{line}: {error}"
    )
    attempts: list[dict[str, Any]] = [
        {"packages": [package]},
        {"packages": ["elsewhere"], "models": [f"{package}.admin.broken.A"]},  # via models=
    ]
    for arguments in attempts:
        with pytest.raises(RoutingError) as caught:
            build_registry(**arguments)
        message = str(caught.value)
        assert message.startswith(expected), message
        assert "\n" not in message
        assert caught.value.__cause__ is not None  # the original is kept for --traceback


def test_a_failing_subpackage_init_and_helper_module_name_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "customer/__init__.py": "\nfrom . import helpers\n",
            "customer/helpers.py": "\n\n\nundefined_name()\n",
        },
    )
    with pytest.raises(RoutingError) as caught:
        build_registry(packages=[package])
    assert str(caught.value) == (
        f"model module '{package}.customer' can't be imported: "
        f"{package}/customer/helpers.py:4: NameError: name 'undefined_name' is not defined"
    )


def test_an_insightdb_error_raised_by_a_model_module_passes_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(
        tmp_path,
        monkeypatch,
        {
            "admin/conf.py": "from insightdb import ConfigurationError\n"
            "raise ConfigurationError('FEATURE_X: required')\n"
        },
    )
    with pytest.raises(ConfigurationError, match=r"^FEATURE_X: required$"):
        build_registry(packages=[package])


# -- collections as Beanie resolves them (issue 9) --------------------------------------------


def test_a_plain_base_and_a_scoped_child_share_the_inherited_collection() -> None:
    from insightdb import TenantScoped

    class SharedBase(CustomerDocument):
        title: str = ""

        class Settings:
            name = "shared_things"

    class ScopedChild(TenantScoped, SharedBase):
        pass

    # The child inherits Settings.name: both models use one collection.
    assert build_registry(models=[ScopedChild]).route(ScopedChild).collection == "shared_things"
    with pytest.raises(
        RoutingError,
        match=r"^SharedBase and ScopedChild share collection 'shared_things' in the customer "
        r"database, but only ScopedChild is TenantScoped: SharedBase would read every "
        r"tenant's documents; make it TenantScoped too, or give the scoped model its own "
        r"Settings.name$",
    ):
        build_registry(models=[SharedBase, ScopedChild])


def test_a_scoped_child_with_its_own_collection_is_fine() -> None:
    from insightdb import TenantScoped
    from insightdb.runtime.checks import check_collections as _check_collections

    class OwnBase(CustomerDocument):
        class Settings:
            name = "own_base"

    class OwnChild(TenantScoped, OwnBase):
        class Settings:
            name = "own_child"

    registry = build_registry(models=[OwnBase, OwnChild])
    scoped = _check_collections(registry, lambda route: route.collection)
    assert scoped == {"admin": frozenset(), "customer": frozenset({"own_child"})}


def test_an_is_root_family_shares_the_root_collection_and_its_scope() -> None:
    from insightdb import TenantScoped
    from insightdb.runtime.checks import check_collections as _check_collections

    class Animal(TenantScoped, CustomerDocument):
        class Settings:
            name = "animals"
            is_root = True

    class Dog(Animal):
        pass

    class Puppy(Dog):
        class Settings:
            name = "ignored_for_children"

    registry = build_registry(models=[Animal, Dog, Puppy])
    assert {r.name: r.collection for r in registry} == {
        "Animal": "animals",
        "Dog": "animals",
        "Puppy": "animals",
    }
    scoped = _check_collections(registry, lambda route: route.collection)
    assert scoped["customer"] == frozenset({"animals"})


def test_a_plain_is_root_family_with_a_scoped_child_is_refused() -> None:
    from insightdb import TenantScoped

    class Shape(CustomerDocument):
        class Settings:
            name = "shapes"
            is_root = True

    class Circle(TenantScoped, Shape):
        pass

    with pytest.raises(
        RoutingError, match=r"^Shape and Circle share collection 'shapes'.*only Circle is Tenant"
    ):
        build_registry(models=[Shape, Circle])


def test_a_union_of_scoped_members_is_scoped() -> None:
    from beanie import UnionDoc

    from insightdb import TenantScoped
    from insightdb.runtime.checks import check_collections as _check_collections

    class Inbox(UnionDoc):
        class Settings:
            name = "inbox"

    class Mail(TenantScoped, CustomerDocument):
        class Settings:
            union_doc = Inbox

    class Memo(TenantScoped, CustomerDocument):
        class Settings:
            union_doc = Inbox

    registry = build_registry(models=[Inbox, Mail, Memo])
    assert {r.name: (r.group, r.collection) for r in registry} == {
        "Inbox": ("customer", "inbox"),
        "Mail": ("customer", "inbox"),
        "Memo": ("customer", "inbox"),
    }
    assert _check_collections(registry, lambda route: route.collection)["customer"] == {"inbox"}


def test_a_union_of_scoped_and_plain_members_is_refused() -> None:
    from beanie import UnionDoc

    from insightdb import TenantScoped

    class Mixed(UnionDoc):
        class Settings:
            name = "mixed"

    class ScopedMember(TenantScoped, CustomerDocument):
        class Settings:
            union_doc = Mixed

    class PlainMember(CustomerDocument):
        class Settings:
            union_doc = Mixed

    with pytest.raises(
        RoutingError,
        match=r"^Mixed \(a UnionDoc\) has tenant-scoped and other members: .* make every "
        r"member TenantScoped or none$",
    ):
        build_registry(models=[Mixed, ScopedMember, PlainMember])


def test_a_union_with_members_in_both_groups_is_refused() -> None:
    from beanie import UnionDoc

    class Everywhere(UnionDoc):
        class Settings:
            name = "everywhere"

    class AdminMember(AdminDocument):
        class Settings:
            union_doc = Everywhere

    class CustomerMember(CustomerDocument):
        class Settings:
            union_doc = Everywhere

    with pytest.raises(
        RoutingError,
        match=r"^Everywhere \(a UnionDoc\) has members in both databases: .* keep its members "
        r"in one group$",
    ):
        build_registry(models=[Everywhere, AdminMember, CustomerMember])


def test_a_view_over_a_scoped_source_is_scoped() -> None:
    from beanie import View

    from insightdb import TenantScoped
    from insightdb.runtime.checks import check_collections as _check_collections

    class Order(TenantScoped, CustomerDocument):
        total: int = 0

        class Settings:
            name = "orders"

    class BigOrders(View):
        total: int = 0

        class Settings:
            source = Order
            name = "big_orders"
            pipeline = [{"$match": {"total": {"$gte": 100}}}]  # noqa: RUF012

    registry = build_registry(models=[Order, BigOrders])
    assert registry.route(BigOrders).group == "customer"
    scoped = _check_collections(registry, lambda route: route.collection)
    assert scoped["customer"] == frozenset({"orders", "big_orders"})


def test_a_view_over_a_scoped_view_is_scoped_whatever_the_order() -> None:
    from beanie import View

    from insightdb import TenantScoped
    from insightdb.runtime.checks import check_collections as _check_collections

    class Shipment(TenantScoped, CustomerDocument):
        weight: int = 0

        class Settings:
            name = "shipments"

    class Heavy(View):
        weight: int = 0

        class Settings:
            source = Shipment
            name = "heavy"
            pipeline = [{"$match": {"weight": {"$gte": 100}}}]  # noqa: RUF012

    class HeavyShipments(View):
        weight: int = 0

        class Settings:
            source = Heavy
            name = "heavy_shipments"
            pipeline = [{"$match": {"weight": {"$gte": 1000}}}]  # noqa: RUF012

    # The view of a view comes first in the routing table.
    registry = build_registry(models=[Shipment, HeavyShipments, Heavy])
    scoped = _check_collections(registry, lambda route: route.collection)
    assert scoped["customer"] == frozenset({"shipments", "heavy", "heavy_shipments"})


def test_a_view_reading_scoped_data_from_a_plain_source_is_refused() -> None:
    from beanie import View

    from insightdb import TenantScoped

    class Invoice(TenantScoped, CustomerDocument):
        class Settings:
            name = "invoices"

    class Currency(CustomerDocument):
        code: str = ""

        class Settings:
            name = "currencies"

    class CurrencyUse(View):
        code: str = ""

        class Settings:
            source = Currency
            name = "currency_use"
            pipeline = [  # noqa: RUF012
                {"$lookup": {"from": "invoices", "pipeline": [], "as": "invoices"}}
            ]

    with pytest.raises(
        RoutingError,
        match=r"^CurrencyUse \(a View\) reads tenant-scoped collections in its pipeline but "
        r"its source is not tenant-scoped, so insightdb can't scope it; build the view on "
        r"the scoped collection, or read it with aggregate\(\) instead$",
    ):
        build_registry(models=[Invoice, Currency, CurrencyUse])


def test_inherited_unique_indexes_must_include_tenant_id() -> None:
    import pymongo
    from beanie import Indexed

    from insightdb import TenantScoped

    class IndexedBase(CustomerDocument):
        email: Indexed(str, unique=True)  # type: ignore[valid-type]

    class FromField(TenantScoped, IndexedBase):
        class Settings:
            name = "from_field"

    class SettingsBase(CustomerDocument):
        email: str = ""

        class Settings:
            name = "settings_base"
            indexes = [pymongo.IndexModel([("email", 1)], unique=True, name="email_global")]  # noqa: RUF012

    class FromSettings(TenantScoped, SettingsBase):
        pass

    class Merged(TenantScoped, SettingsBase):
        class Settings:
            name = "merged"
            merge_indexes = True
            indexes = [pymongo.IndexModel([("tenant_id", 1), ("email", 1)], unique=True)]  # noqa: RUF012

    class Replaced(TenantScoped, SettingsBase):
        # Its own Settings replace the base's (no merge_indexes): only its index counts.
        class Settings:
            name = "replaced"
            indexes = [pymongo.IndexModel([("tenant_id", 1), ("email", 1)], unique=True)]  # noqa: RUF012

    class Allowed(TenantScoped, SettingsBase):
        __tenant_global_unique__ = ("email_global",)

        class Settings(SettingsBase.Settings):
            name = "allowed"

    with pytest.raises(
        RoutingError,
        match=r"^FromField: unique index 'email_1' on email is global across tenants; include "
        r"tenant_id \(IndexModel\(\[\('tenant_id', 1\), \.\.\.\], unique=True\)\) or list "
        r"'email_1' in __tenant_global_unique__$",
    ):
        build_registry(models=[FromField])
    with pytest.raises(RoutingError, match=r"^FromSettings: unique index 'email_global' on email"):
        build_registry(models=[FromSettings])
    with pytest.raises(RoutingError, match=r"^Merged: unique index 'email_global' on email"):
        build_registry(models=[Merged])
    assert len(build_registry(models=[Replaced, Allowed])) == 2


@pytest.mark.parametrize(
    ("stage", "named"),
    [
        ({"$lookup": {"from": "tasks", "pipeline": [], "as": "tasks"}}, "a lookup into"),
        (
            {"$lookup": {"from": "tasks", "localField": "_id", "foreignField": "p", "as": "t"}},
            "a lookup into",
        ),
        ({"$unionWith": {"coll": "tasks"}}, "a lookup into"),
        ({"$group": {"_id": "$status", "tenant_id": {"$first": "$tenant_id"}}}, r"\$group"),
        ({"$setWindowFields": {"output": {"rank": {"$rank": {}}}}}, r"\$setWindowFields"),
        ({"$limit": 10}, r"\$limit"),
    ],
)
def test_a_view_over_a_scoped_source_may_not_combine_tenants(
    stage: dict[str, object], named: str
) -> None:
    # The server runs a view's pipeline over every tenant's documents; insightdb can only
    # filter the view's output by tenant. A join into another scoped collection or a
    # stage that combines documents would hand one tenant data derived from others'.
    from beanie import View

    from insightdb import TenantScoped

    class Project(TenantScoped, CustomerDocument):
        status: str = ""

        class Settings:
            name = "projects"

    class Task(TenantScoped, CustomerDocument):
        class Settings:
            name = "tasks"

    class ProjectReport(View):
        class Settings:
            source = Project
            name = "project_report"
            pipeline = [{"$match": {"status": "open"}}, stage]  # noqa: RUF012

    with pytest.raises(
        RoutingError,
        match=rf"^ProjectReport \(a View\) over tenant-scoped 'projects' uses {named}.*"
        r"Model\.aggregate\(\), which insightdb scopes$",
    ):
        build_registry(models=[Project, Task, ProjectReport])


def test_a_single_model_spec_is_not_split_into_characters() -> None:
    # init(models="pkg.module") and init(models=Model) take one spec as well as a list.
    from insightdb import InsightDB
    from insightdb.settings import get_settings

    class Lone(AdminDocument):
        pass

    settings = get_settings(env="testing")
    assert InsightDB(settings, models=Lone)._explicit_models == [Lone]
    assert InsightDB(settings, models="models")._explicit_models == ["models"]
    assert InsightDB(settings, models=[Lone])._explicit_models == [Lone]
