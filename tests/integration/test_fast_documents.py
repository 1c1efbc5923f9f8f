"""The fast Documents path keeps Beanie's semantics (insightdb.runtime.hydration).

Every model here exists twice: on the fast path (the default) and with
``insightdb_fast_path = False`` (Beanie's own parsing and encoding). The same operations on
both must store the same documents and give back the same objects: field types, links and
back-links, revisions, state management, events, validation on save, lazy parsing,
inheritance, tenancy.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import ipaddress
import uuid
from typing import Any

import bson
import pytest
from beanie import (
    BackLink,
    DecimalAnnotation,
    Insert,
    Link,
    PydanticObjectId,
    WriteRules,
    before_event,
)
from beanie.odm.utils.dump import get_dict
from pydantic import BaseModel, Field, HttpUrl, SecretStr, ValidationError

import insightdb
from insightdb import AdminDocument, CustomerDocument, Settings, TenantScoped, tenant_context
from insightdb.exceptions import TenantContextError
from insightdb.runtime.hydration import FastFindMany, plan_for

pytestmark = pytest.mark.integration

WHEN = datetime.datetime(2025, 3, 1, 12, 30, 15, 123000, tzinfo=datetime.UTC)


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Level(int, enum.Enum):
    LOW = 1
    HIGH = 2


class Inner(BaseModel):
    a: int
    tags: list[str] = []
    when: datetime.datetime | None = None


class AllTypes(BaseModel):
    text: str
    number: int
    ratio: float
    flag: bool
    nothing: str | None = None
    when: datetime.datetime
    day: datetime.date
    span: datetime.timedelta
    money: DecimalAnnotation
    key: uuid.UUID
    blob: bytes
    color: Color
    level: Level
    address: ipaddress.IPv4Address
    secret: SecretStr
    url: HttpUrl
    inner: Inner
    inners: list[Inner]
    mapping: dict[str, int]
    pair: tuple[int, str]
    ref: PydanticObjectId
    binary: bson.Binary = Field(default_factory=lambda: bson.Binary(b"\x01\x02", 5))
    excluded: str = Field(default="hidden", exclude=True)
    aliased: int = Field(default=3, alias="stored_as")

    model_config = {"arbitrary_types_allowed": True}


class FastAll(AllTypes, AdminDocument):
    class Settings:
        name = "all_fast"


class SlowAll(AllTypes, AdminDocument):
    class Settings:
        name = "all_slow"
        insightdb_fast_path = False


def all_values() -> dict[str, Any]:
    return {
        "text": "text",
        "number": 7,
        "ratio": 1.5,
        "flag": True,
        "when": WHEN,
        "day": datetime.date(2025, 1, 2),
        "span": datetime.timedelta(seconds=90),
        "money": decimal.Decimal("1.10"),
        "key": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\x01",
        "color": Color.RED,
        "level": Level.HIGH,
        "address": ipaddress.IPv4Address("10.0.0.1"),
        "secret": SecretStr("s3cret"),
        "url": "https://example.com/x",
        "inner": Inner(a=1, tags=["x"], when=WHEN),
        "inners": [Inner(a=2), Inner(a=3, tags=["y", "z"])],
        "mapping": {"k": 1},
        "pair": (1, "x"),
        "ref": PydanticObjectId(),
        "stored_as": 4,
    }


class Tracked(AdminDocument):
    name: str
    tally: int = 0
    nested: Inner = Inner(a=0)
    stamped: str | None = None

    @before_event(Insert)
    def stamp(self) -> None:
        self.stamped = "by-event"


class FastTracked(Tracked):
    class Settings:
        name = "tracked_fast"
        use_state_management = True
        state_management_save_previous = True
        use_revision = True
        validate_on_save = True


class SlowTracked(Tracked):
    class Settings:
        name = "tracked_slow"
        use_state_management = True
        state_management_save_previous = True
        use_revision = True
        validate_on_save = True
        insightdb_fast_path = False


class FastOwner(AdminDocument):
    name: str
    target: Link[FastTarget] | None = None
    targets: list[Link[FastTarget]] = Field(default_factory=list)

    class Settings:
        name = "owner_fast"


class FastTarget(AdminDocument):
    label: str
    owners: list[BackLink[FastOwner]] = Field(json_schema_extra={"original_field": "target"})

    class Settings:
        name = "target_fast"


class SlowOwner(AdminDocument):
    name: str
    target: Link[SlowTarget] | None = None
    targets: list[Link[SlowTarget]] = Field(default_factory=list)

    class Settings:
        name = "owner_slow"
        insightdb_fast_path = False


class SlowTarget(AdminDocument):
    label: str
    owners: list[BackLink[SlowOwner]] = Field(json_schema_extra={"original_field": "target"})

    class Settings:
        name = "target_slow"
        insightdb_fast_path = False


FastOwner.model_rebuild()
SlowOwner.model_rebuild()


class Vehicle(AdminDocument):
    wheels: int

    class Settings:
        name = "vehicles"
        is_root = True


class Car(Vehicle):
    doors: int = 4


class Task(TenantScoped, CustomerDocument):
    title: str

    class Settings:
        name = "tasks"


MODELS = [
    FastAll,
    SlowAll,
    FastTracked,
    SlowTracked,
    FastTarget,
    FastOwner,
    SlowTarget,
    SlowOwner,
    Vehicle,
    Car,
    Task,
]


def dumped(document: BaseModel) -> dict[str, Any]:
    """``model_dump`` without the id, which differs between the twin models."""
    data = document.model_dump()
    data.pop("id", None)
    return data


def stored(raw: dict[str, Any] | None) -> dict[str, Any]:
    assert raw is not None
    return {k: v for k, v in raw.items() if k != "_id"}


@pytest.mark.insightdb(models=MODELS)
async def test_the_fast_path_is_on_where_expected(insightdb_db: Any) -> None:
    assert plan_for(FastAll) is not None
    assert plan_for(FastAll).validator is not None  # type: ignore[union-attr]
    assert plan_for(SlowAll) is None
    assert isinstance(FastAll.find(), FastFindMany)


@pytest.mark.insightdb(models=MODELS)
async def test_every_field_type_round_trips_as_with_beanie(insightdb_db: Any) -> None:
    values = all_values()
    fast, slow = FastAll(**values), SlowAll(**values)
    assert plan_for(FastAll).to_dict(fast, to_db=True) == get_dict(fast, to_db=True)  # type: ignore[union-attr]
    await fast.insert()
    await slow.insert()
    raw_fast = await FastAll.get_pymongo_collection().find_one({"_id": fast.id})
    raw_slow = await SlowAll.get_pymongo_collection().find_one({"_id": slow.id})
    assert stored(raw_fast) == stored(raw_slow)
    assert "excluded" not in stored(raw_fast)
    assert stored(raw_fast)["stored_as"] == 4

    for read_fast, read_slow in [
        (await FastAll.get(fast.id), await SlowAll.get(slow.id)),
        ((await FastAll.find_all().to_list())[0], (await SlowAll.find_all().to_list())[0]),
        (
            (await FastAll.aggregate([], projection_model=FastAll).to_list())[0],
            (await SlowAll.aggregate([], projection_model=SlowAll).to_list())[0],
        ),
    ]:
        assert read_fast is not None
        assert read_slow is not None
        assert type(read_fast.id) is PydanticObjectId
        assert dumped(read_fast) == dumped(read_slow)
        assert read_fast.model_fields_set == read_slow.model_fields_set
        assert read_fast.when == WHEN
        assert read_fast.color is Color.RED
        assert read_fast.inner == Inner(a=1, tags=["x"], when=WHEN)
    await FastAll.insert_many([FastAll(**all_values()) for _ in range(3)])
    await SlowAll.insert_many([SlowAll(**all_values()) for _ in range(3)])
    assert await FastAll.count() == await SlowAll.count() == 4


@pytest.mark.insightdb(models=MODELS)
async def test_construction_matches_beanie_init(insightdb_db: Any) -> None:
    """``Model(**values)`` on the fast path builds what Beanie's ``__init__`` builds."""
    values = all_values()
    fast, slow = FastAll(**values), SlowAll(**values)
    assert dumped(fast) == dumped(slow)
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert FastAll.model_validate(values).model_dump() == fast.model_dump()
    # Defaults, aliases by name and by alias, and the same errors, titled by the model.
    assert FastAll(**{**values, "stored_as": 9}).aliased == 9
    fast_default = FastAll(**{k: v for k, v in values.items() if k != "binary"})
    assert fast_default.binary == bson.Binary(b"\x01\x02", 5)
    for bad in ({**values, "number": "seven"}, {"text": 1}):
        with pytest.raises(ValidationError) as fast_error:
            FastAll(**bad)
        with pytest.raises(ValidationError) as slow_error:
            SlowAll(**bad)
        assert fast_error.value.errors() == slow_error.value.errors()
        assert fast_error.value.title == "FastAll"
    # Positional arguments are refused as Pydantic refuses them.
    with pytest.raises(TypeError):
        FastAll(values)  # type: ignore[misc]
    with pytest.raises(TypeError):
        SlowAll(values)  # type: ignore[misc]


async def outcome(step: Any) -> Any:
    """The value of awaiting ``step()``, or the type of what it raised."""
    try:
        result = await step()
    except Exception as exc:  # the comparison is the point: both paths must agree
        return type(exc)
    return "a document" if isinstance(result, Tracked) else result


async def tracked_trace(model: type[Tracked]) -> list[Any]:
    """Run one story of state, revisions, events and validation; record what happens."""
    trace: list[Any] = []
    document = await model(name="a").insert()
    trace += [document.stamped, document.revision_id is not None]
    read = await model.get(document.id)
    assert read is not None
    trace += [read.get_saved_state() == document.get_saved_state(), read.is_changed]
    read.tally = 5
    read.nested.tags.append("t")
    trace += [read.is_changed, read.get_changes()]
    trace.append(await outcome(lambda: read.save_changes()))
    trace += [read.is_changed, read.has_changed, read.get_previous_changes()]
    read.tally = 6
    read.rollback()
    trace.append(read.tally)
    stale = await model.get(document.id)
    assert stale is not None
    read.name = "b"
    trace.append(await outcome(lambda: read.save()))
    stale.name = "c"
    trace.append(await outcome(lambda: stale.replace()))
    trace.append(await outcome(lambda: stale.save()))
    trace.append(await outcome(lambda: stale.replace(ignore_revision=True)))
    again = await model.get(document.id)
    assert again is not None
    trace += [again.name, again.tally, again.get_saved_state() is not None]
    again.tally = "not a number"  # type: ignore[assignment]
    trace.append(await outcome(lambda: again.save()))
    return [t.__name__ if isinstance(t, type) else t for t in trace]


@pytest.mark.insightdb(models=MODELS)
async def test_state_management_revisions_events_and_validation(insightdb_db: Any) -> None:
    fast, slow = await tracked_trace(FastTracked), await tracked_trace(SlowTracked)
    assert fast == slow
    assert fast[:2] == ["by-event", True]  # before_event(Insert) ran; a revision was set
    assert fast[-1] != "a document"  # validate_on_save refused the bad value
    assert "RevisionIdWasChanged" in fast


@pytest.mark.insightdb(models=MODELS)
async def test_links_and_back_links(insightdb_db: Any) -> None:
    results = []
    for owner_model, target_model in ((FastOwner, FastTarget), (SlowOwner, SlowTarget)):
        target = await target_model(label="t").insert()
        others = [await target_model(label=f"o{i}").insert() for i in range(2)]
        owner = owner_model(name="o", target=target, targets=others)
        await owner.insert(link_rule=WriteRules.WRITE)
        raw = await owner_model.get_pymongo_collection().find_one({"_id": owner.id})
        assert raw is not None
        assert isinstance(raw["target"], bson.DBRef)
        lazy = await owner_model.get(owner.id)
        assert lazy is not None
        assert isinstance(lazy.target, Link)
        fetched = await owner_model.find_one(owner_model.id == owner.id, fetch_links=True)
        assert fetched is not None
        assert isinstance(fetched.target, target_model)
        assert [t.label for t in fetched.targets] == ["o0", "o1"]  # type: ignore[union-attr]
        back = await target_model.get(target.id, fetch_links=True)
        assert back is not None
        assert [o.name for o in back.owners] == ["o"]  # type: ignore[union-attr]
        listed = await owner_model.find_all(fetch_links=True).to_list()
        results.append(
            (
                dumped(fetched)["name"],
                [t.label for t in listed[0].targets],  # type: ignore[union-attr]
                stored(raw).keys(),
            )
        )
    assert results[0] == results[1]


@pytest.mark.insightdb(models=MODELS)
async def test_lazy_parsing_and_inheritance(insightdb_db: Any) -> None:
    await FastOwner(name="lazy").insert()
    lazy = (await FastOwner.find_all(lazy_parse=True).to_list())[0]
    assert lazy.name == "lazy"
    plan = plan_for(FastOwner)
    assert plan is not None
    assert plan.to_dict(lazy, to_db=True) == get_dict(lazy, to_db=True)
    lazy.name = "lazier"
    await lazy.save()
    again = await FastOwner.get(lazy.id)
    assert again is not None
    assert again.name == "lazier"

    await Vehicle(wheels=2).insert()
    await Car(wheels=4, doors=2).insert()
    vehicles = await Vehicle.find_all(with_children=True).to_list()
    assert sorted(type(v).__name__ for v in vehicles) == ["Car", "Vehicle"]
    cars = await Car.find_all().to_list()
    assert [(c.wheels, c.doors) for c in cars] == [(4, 2)]


@pytest.mark.insightdb(models=MODELS)
async def test_tenancy_applies_to_the_fast_path(insightdb_db: Any) -> None:
    with tenant_context("a"):
        await Task.insert_many([Task(title="a1"), Task(title="a2")])
    with tenant_context("b"):
        await Task(title="b1").insert()
        assert [t.title for t in await Task.find_all().to_list()] == ["b1"]
    with tenant_context("a"):
        tasks = await Task.find_all().to_list()
        assert sorted(t.title for t in tasks) == ["a1", "a2"]
        assert {t.tenant_id for t in tasks} == {"a"}
    with pytest.raises(TenantContextError):
        await Task.find_all().to_list()


async def test_the_global_switch_turns_it_off(insightdb_settings: Settings) -> None:
    features = insightdb_settings.features.model_copy(update={"fast_documents": False})
    settings = insightdb_settings.model_copy(update={"features": features})
    async with insightdb.connect(settings, models=[FastAll]):
        assert plan_for(FastAll) is None
        document = await FastAll(**all_values()).insert()
        read = await FastAll.get(document.id)
        assert read is not None
        assert dumped(read) == dumped(document)
