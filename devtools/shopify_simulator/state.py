"""In-memory state of the Shopify Admin simulator: shops, their objects, cost buckets and faults.

Everything here is plain synchronous Python guarded by one re-entrant lock. The simulator's request
handlers run on uvicorn's event loop thread while tests and seeders may touch ``SimulatorState``
directly from another thread, so every public mutator takes ``SimulatorState.lock``; the critical
sections are tiny (dictionary look-ups), which keeps the simulator fast enough for benchmarks.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

PLAN_RESTORE_RATES: dict[str, float] = {
    "basic": 100.0,
    "standard": 100.0,
    "advanced": 200.0,
    "plus": 1000.0,
    "enterprise": 2000.0,
}
"""Restore rate (points per second) of the Admin GraphQL leaky bucket, by Shopify plan."""

DEFAULT_PLAN = "standard"
DEFAULT_MAXIMUM_AVAILABLE = 1000.0
SHOP_STATUSES = frozenset({"active", "frozen", "locked", "gone"})

METAOBJECT_GID = "gid://shopify/Metaobject/"
PRODUCT_GID = "gid://shopify/Product/"
VARIANT_GID = "gid://shopify/ProductVariant/"
DISCOUNT_GID = "gid://shopify/DiscountAutomaticNode/"

FAULT_KINDS = ("5xx", "throttle", "timeout", "malformed")
"""Canonical fault kinds, in the order a random draw tests them."""

_KIND_ALIASES = {
    "5xx": "5xx",
    "error5xx": "5xx",
    "500": "5xx",
    "502": "5xx",
    "503": "5xx",
    "504": "5xx",
    "throttle": "throttle",
    "throttle429": "throttle",
    "429": "throttle",
    "timeout": "timeout",
    "malformed": "malformed",
    "truncated": "malformed",
    "partial": "malformed",
}

_NUMERIC_TAIL = re.compile(r"/(\d+)$")


class SimulatorInputError(ValueError):
    """A control-API payload that cannot be applied; answered with HTTP 400 and the message."""


class UnknownShopError(LookupError):
    """A control-API call named a shop that was never registered; answered with HTTP 404."""


def now_iso() -> str:
    """Current UTC time in the ISO-8601 form Shopify uses (second precision, ``Z`` suffix)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def field_value(value: Any) -> str | None:
    """Normalise a metaobject field value to what Shopify stores: a string, or null.

    Seeders may pass Python lists/dicts (e.g. the ``products`` list of a legacy bundle); Shopify
    keeps JSON-typed fields as JSON text, so they are encoded rather than rejected.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def parse_fields(raw: Any) -> dict[str, str | None]:
    """Accept ``{key: value}`` or ``[{key, value}]`` and return an ordered ``{key: value}`` dict."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): field_value(v) for k, v in raw.items()}
    if isinstance(raw, list):
        out: dict[str, str | None] = {}
        for item in raw:
            if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
                raise SimulatorInputError(f"field entries need a string 'key': {item!r}")
            out[item["key"]] = field_value(item.get("value"))
        return out
    kind = type(raw).__name__
    raise SimulatorInputError(f"fields must be an object or a list of {{key, value}}, got {kind}")


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    """One field of a metaobject definition: its Shopify type, whether it is required, its name."""

    type: str
    required: bool
    name: str


@dataclass(frozen=True, slots=True)
class MetaobjectDefinition:
    """A metaobject definition as Shopify enforces it on writes (types, required fields, capabilities)."""

    type: str
    fields: Mapping[str, FieldDefinition]
    publishable: bool


PRODUCT_BUNDLES_DEFINITION = MetaobjectDefinition(
    type="product-bundles",
    fields={
        "bundle_name": FieldDefinition("single_line_text_field", True, "Bundle name"),
        "bundle_title": FieldDefinition("single_line_text_field", True, "Bundle title"),
        "description": FieldDefinition("multi_line_text_field", True, "Description"),
        "created_at": FieldDefinition("date_time", True, "Created at"),
        "discount": FieldDefinition("number_integer", True, "Discount"),
        "products": FieldDefinition("list.product_reference", True, "Products"),
    },
    publishable=True,
)
"""The legacy app's ``product-bundles`` definition (``metaobjectDefinitionCreate`` with the publishable
capability on); every simulated shop has it, as every shop that installed the legacy app does."""

METAOBJECT_DEFINITIONS: dict[str, MetaobjectDefinition] = {PRODUCT_BUNDLES_DEFINITION.type: PRODUCT_BUNDLES_DEFINITION}
"""Definitions enforced on GraphQL writes. Metaobjects of other types are stored as given."""

STATUS_ACTIVE = "ACTIVE"
STATUS_DRAFT = "DRAFT"
METAOBJECT_STATUSES = frozenset({STATUS_ACTIVE, STATUS_DRAFT})


@dataclass(slots=True)
class Metaobject:
    """A metaobject as the Admin API exposes it (all field values are strings or null).

    ``status`` is the publishable capability's status (``ACTIVE``/``DRAFT``), None for a type without
    that capability: a ``DRAFT`` bundle is invisible to the storefront.
    """

    id: str
    handle: str
    type: str
    fields: dict[str, str | None]
    updated_at: str = field(default_factory=now_iso)
    status: str | None = None

    def capabilities(self) -> dict[str, Any]:
        publishable = {"status": self.status} if self.status is not None else None
        return {"publishable": publishable, "onlineStore": None}

    def to_graphql(self) -> dict[str, Any]:
        return {
            "__typename": "Metaobject",
            "id": self.id,
            "handle": self.handle,
            "type": self.type,
            "fields": [{"key": k, "value": v, "type": _field_type(self.type, k)} for k, v in self.fields.items()],
            "capabilities": self.capabilities(),
            "updatedAt": self.updated_at,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handle": self.handle,
            "type": self.type,
            "fields": [{"key": k, "value": v} for k, v in self.fields.items()],
            "capabilities": self.capabilities(),
            "updatedAt": self.updated_at,
        }


def _field_type(type_: str, key: str) -> str | None:
    definition = METAOBJECT_DEFINITIONS.get(type_)
    spec = definition.fields.get(key) if definition is not None else None
    return spec.type if spec is not None else None


def default_status(type_: str) -> str | None:
    """Status of a metaobject written without ``capabilities``: DRAFT when the type is publishable."""
    definition = METAOBJECT_DEFINITIONS.get(type_)
    return STATUS_DRAFT if definition is not None and definition.publishable else None


@dataclass(slots=True)
class Product:
    """A product with exactly one variant: all the service caches is title, price, image and stock."""

    id: str
    title: str
    price: str
    sku: str | None
    image_url: str | None
    inventory_quantity: int
    variant_id: str

    def variant_graphql(self) -> dict[str, Any]:
        return {
            "__typename": "ProductVariant",
            "id": self.variant_id,
            "price": self.price,
            "sku": self.sku,
            "inventoryQuantity": self.inventory_quantity,
        }

    def to_graphql(self) -> dict[str, Any]:
        return {
            "__typename": "Product",
            "id": self.id,
            "title": self.title,
            "featuredImage": {"url": self.image_url} if self.image_url else None,
            "variants": {"nodes": [self.variant_graphql()]},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "price": self.price,
            "sku": self.sku,
            "imageUrl": self.image_url,
            "inventoryQuantity": self.inventory_quantity,
            "variantId": self.variant_id,
        }


@dataclass(slots=True)
class Discount:
    """An automatic basic discount; ``raw`` keeps the merged mutation input for assertions."""

    id: str
    title: str
    percentage: float | None
    product_ids: list[str]
    raw: dict[str, Any]
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "percentage": self.percentage,
            "productIds": self.product_ids,
            "input": self.raw,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(slots=True)
class CostBucket:
    """Shopify's calculated-query-cost leaky bucket, refilled continuously by the monotonic clock."""

    maximum_available: float = DEFAULT_MAXIMUM_AVAILABLE
    restore_rate: float = PLAN_RESTORE_RATES[DEFAULT_PLAN]
    available: float = DEFAULT_MAXIMUM_AVAILABLE
    updated_at: float = field(default_factory=time.monotonic)

    def refill(self) -> float:
        now = time.monotonic()
        elapsed = now - self.updated_at
        if elapsed > 0:
            self.available = min(self.maximum_available, self.available + elapsed * self.restore_rate)
        self.updated_at = now
        return self.available

    def throttle_status(self) -> dict[str, Any]:
        # Shopify reports whole points; rounding down makes a client's computed wait slightly
        # longer, never too short.
        return {
            "maximumAvailable": _num(self.maximum_available),
            "currentlyAvailable": math.floor(self.available),
            "restoreRate": _num(self.restore_rate),
        }


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass(slots=True)
class InjectedFault:
    """One fault to inflict on a GraphQL request; optional fields pin what is otherwise random."""

    kind: str
    status: int | None = None
    body: str | None = None
    variant: str | None = None
    sleep_s: float | None = None

    @classmethod
    def parse(cls, raw: Any) -> InjectedFault:
        if isinstance(raw, str):
            raw = {"kind": raw}
        if not isinstance(raw, Mapping):
            raise SimulatorInputError(f"fault entries must be objects or kind strings, got {raw!r}")
        given = str(raw.get("kind", ""))
        kind = _KIND_ALIASES.get(given.lower())
        if kind is None:
            known = sorted(_KIND_ALIASES)
            raise SimulatorInputError(f"unknown fault kind {given!r}; expected one of {known}")
        status = raw.get("status")
        if status is None and given.isdigit() and kind == "5xx":
            status = int(given)
        variant = raw.get("variant")
        if variant is None and given.lower() in ("truncated", "partial"):
            variant = given.lower()
        if variant is not None and variant not in ("truncated", "partial"):
            raise SimulatorInputError("malformed variant must be 'truncated' or 'partial'")
        body = raw.get("body")
        if body is not None and body not in ("html", "json"):
            raise SimulatorInputError("5xx body must be 'html' or 'json'")
        sleep_s = raw.get("sleepS")
        return cls(
            kind=kind,
            status=int(status) if status is not None else None,
            body=body,
            variant=variant,
            sleep_s=_float(sleep_s, "sleepS") if sleep_s is not None else None,
        )


@dataclass(slots=True)
class FaultConfig:
    """Fault settings; on a shop, ``None`` means "inherit the global value"."""

    error5xx: float | None = None
    throttle429: float | None = None
    timeout: float | None = None
    malformed: float | None = None
    latency_ms: float | None = None
    timeout_sleep_s: float | None = None
    throttle_status_code: int | None = None

    @classmethod
    def global_defaults(cls) -> FaultConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 30.0, 200)

    def to_json(self) -> dict[str, Any]:
        return {
            "error5xx": self.error5xx,
            "throttle429": self.throttle429,
            "timeout": self.timeout,
            "malformed": self.malformed,
            "latencyMs": self.latency_ms,
            "timeoutSleepS": self.timeout_sleep_s,
            "throttleStatusCode": self.throttle_status_code,
        }


_FAULT_PAYLOAD_KEYS = {
    "error5xx": "error5xx",
    "throttle429": "throttle429",
    "timeout": "timeout",
    "malformed": "malformed",
    "latencyMs": "latency_ms",
    "timeoutSleepS": "timeout_sleep_s",
    "throttleStatusCode": "throttle_status_code",
}


@dataclass(frozen=True, slots=True)
class ResolvedFaults:
    """Effective fault settings for one request (shop values over global ones)."""

    rates: tuple[float, float, float, float]  # in FAULT_KINDS order
    latency_ms: float
    timeout_sleep_s: float
    throttle_status_code: int


@dataclass(slots=True)
class ShopState:
    """One shop: credentials, status, cost bucket, objects and fault overrides."""

    name: str
    token: str | None
    plan: str = DEFAULT_PLAN
    status: str = "active"
    bucket: CostBucket = field(default_factory=CostBucket)
    metaobjects: dict[str, Metaobject] = field(default_factory=dict)
    handles: dict[tuple[str, str], str] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)
    discounts: dict[str, Discount] = field(default_factory=dict)
    faults: FaultConfig = field(default_factory=FaultConfig)
    next_faults: deque[InjectedFault] = field(default_factory=deque)

    def to_json(self) -> dict[str, Any]:
        self.bucket.refill()
        return {
            "shop": self.name,
            "token": self.token,
            "plan": self.plan,
            "status": self.status,
            "throttleStatus": self.bucket.throttle_status(),
            "counts": {
                "metaobjects": len(self.metaobjects),
                "products": len(self.products),
                "discounts": len(self.discounts),
            },
        }

    def metaobject_by_handle(self, type_: str, handle: str) -> Metaobject | None:
        mid = self.handles.get((type_, handle))
        return self.metaobjects.get(mid) if mid is not None else None


@dataclass(slots=True)
class SimulatorStats:
    """Counters the benchmarks and tests read back through ``GET /_sim/stats``."""

    requests: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    node_ids: Counter[str] = field(default_factory=Counter)
    status_codes: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "byKind": dict(self.by_kind),
            "throttled": dict(self.throttled),
            "faultsInjected": dict(self.faults_injected),
            "nodeIds": dict(self.node_ids),
            "statusCodes": dict(self.status_codes),
        }


def _rate(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise SimulatorInputError(f"{key} must be a number between 0 and 1")
    return float(value)


class SimulatorState:
    """All simulator state: shops, the global id counter, fault settings, the RNG and stats.

    A single seedable ``random.Random`` drives every random decision (which fault, 502 vs 503,
    truncated vs partial) so that a seeded run replays the same faults for the same request order.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.lock = threading.RLock()
        self.shops: dict[str, ShopState] = {}
        self.faults = FaultConfig.global_defaults()
        self.next_faults: deque[InjectedFault] = deque()
        self.rng = random.Random(seed)
        self.stats = SimulatorStats()
        self._next_id = 1

    # -- ids -----------------------------------------------------------------------------------

    def new_id(self) -> int:
        """Next number of the global id counter (shared by every object type, like a database)."""
        with self.lock:
            n = self._next_id
            self._next_id += 1
            return n

    def _note_id(self, gid: str) -> None:
        """Keep auto-assigned ids clear of explicit numeric ids given by seeders."""
        m = _NUMERIC_TAIL.search(gid)
        if m:
            self._next_id = max(self._next_id, int(m.group(1)) + 1)

    # -- lifecycle -----------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.shops.clear()
            self.faults = FaultConfig.global_defaults()
            self.next_faults.clear()
            self.stats = SimulatorStats()
            self._next_id = 1

    def reset_stats(self) -> None:
        with self.lock:
            self.stats = SimulatorStats()

    # -- shops ---------------------------------------------------------------------------------

    def upsert_shop(self, name: str, payload: Mapping[str, Any]) -> ShopState:
        """Create or update a shop from a ``PUT /_sim/shops/{shop}`` payload.

        Only keys present in the payload change; ``"token": null`` revokes the token. A plan sets
        the restore rate unless ``restoreRate`` is given explicitly. ``currentlyAvailable`` lets a
        test start from a drained bucket without spending requests on it.
        """
        with self.lock:
            shop = self.shops.get(name)
            created = shop is None
            if shop is None:
                shop = ShopState(name=name, token=None)
                self.shops[name] = shop
            bucket = shop.bucket
            bucket.refill()
            if "token" in payload:
                token = payload["token"]
                if token is not None and not isinstance(token, str):
                    raise SimulatorInputError("token must be a string or null")
                shop.token = token
            if payload.get("plan") is not None:
                plan = str(payload["plan"]).lower()
                if plan not in PLAN_RESTORE_RATES:
                    known = sorted(PLAN_RESTORE_RATES)
                    raise SimulatorInputError(f"unknown plan {plan!r}; expected one of {known}")
                shop.plan = plan
                bucket.restore_rate = PLAN_RESTORE_RATES[plan]
            if payload.get("restoreRate") is not None:
                bucket.restore_rate = _positive(payload, "restoreRate")
            if payload.get("maximumAvailable") is not None:
                bucket.maximum_available = _positive(payload, "maximumAvailable")
                # A new shop starts with a full bucket; an existing one keeps what it has left.
                bucket.available = (
                    bucket.maximum_available if created else min(bucket.available, bucket.maximum_available)
                )
            if payload.get("currentlyAvailable") is not None:
                value = payload["currentlyAvailable"]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise SimulatorInputError("currentlyAvailable must be a number")
                bucket.available = max(0.0, min(value, bucket.maximum_available))
            if payload.get("status") is not None:
                status = str(payload["status"])
                if status not in SHOP_STATUSES:
                    raise SimulatorInputError(f"status must be one of {sorted(SHOP_STATUSES)}")
                shop.status = status
            return shop

    def get_shop(self, name: str) -> ShopState | None:
        return self.shops.get(name)

    def require_shop(self, name: str) -> ShopState:
        shop = self.shops.get(name)
        if shop is None:
            raise UnknownShopError(f"unknown shop {name!r}")
        return shop

    def delete_shop(self, name: str) -> bool:
        with self.lock:
            return self.shops.pop(name, None) is not None

    def revoke_token(self, name: str) -> None:
        with self.lock:
            self.require_shop(name).token = None

    # -- metaobjects ---------------------------------------------------------------------------

    def put_metaobject(
        self,
        shop: ShopState,
        type_: str,
        handle: str | None,
        fields: dict[str, str | None],
        gid: str | None = None,
        status: str | None = None,
    ) -> Metaobject:
        """Insert (or replace, for an existing ``gid``) one metaobject, keeping handles unique per type.

        No definition is checked here: GraphQL mutations validate before calling this, and the control
        API seeds legacy data as it really is, messy values included. Raises ``SimulatorInputError``
        when the handle already belongs to another metaobject of the same type, as Shopify enforces.
        """
        with self.lock:
            if not type_:
                raise SimulatorInputError("metaobject type must not be empty")
            if gid is None:
                gid = f"{METAOBJECT_GID}{self.new_id()}"
            else:
                self._note_id(gid)
            if not handle:
                handle = f"{type_}-{gid.rsplit('/', 1)[-1]}".lower()
            owner = shop.handles.get((type_, handle))
            if owner is not None and owner != gid:
                raise SimulatorInputError(f"handle {handle!r} of type {type_!r} is taken by {owner}")
            previous = shop.metaobjects.get(gid)
            if previous is not None:
                shop.handles.pop((previous.type, previous.handle), None)
            mo = Metaobject(id=gid, handle=handle, type=type_, fields=fields, status=status)
            shop.metaobjects[gid] = mo
            shop.handles[(type_, handle)] = gid
            return mo

    def add_metaobjects(self, shop_name: str, items: Iterable[Any]) -> list[Metaobject]:
        with self.lock:
            shop = self.require_shop(shop_name)
            created: list[Metaobject] = []
            for item in items:
                if not isinstance(item, Mapping):
                    raise SimulatorInputError(f"metaobject items must be objects, got {item!r}")
                type_ = item.get("type")
                if not isinstance(type_, str):
                    raise SimulatorInputError(f"metaobject item needs a string 'type': {item!r}")
                handle = item.get("handle")
                gid = item.get("id")
                created.append(
                    self.put_metaobject(
                        shop,
                        type_,
                        str(handle) if handle is not None else None,
                        parse_fields(item.get("fields")),
                        str(gid) if gid is not None else None,
                        _seed_status(type_, item),
                    )
                )
            return created

    def remove_metaobject(self, shop: ShopState, gid: str) -> Metaobject | None:
        with self.lock:
            mo = shop.metaobjects.pop(gid, None)
            if mo is not None:
                shop.handles.pop((mo.type, mo.handle), None)
            return mo

    # -- products ------------------------------------------------------------------------------

    def add_products(self, shop_name: str, items: Iterable[Any]) -> list[Product]:
        with self.lock:
            shop = self.require_shop(shop_name)
            created: list[Product] = []
            for item in items:
                if not isinstance(item, Mapping):
                    raise SimulatorInputError(f"product items must be objects, got {item!r}")
                gid = item.get("id")
                if gid is None:
                    gid = f"{PRODUCT_GID}{self.new_id()}"
                else:
                    gid = str(gid)
                    self._note_id(gid)
                variant_id = item.get("variantId")
                if variant_id is None:
                    variant_id = f"{VARIANT_GID}{self.new_id()}"
                else:
                    variant_id = str(variant_id)
                    self._note_id(variant_id)
                product = Product(
                    id=gid,
                    title=str(item.get("title") or f"Product {gid.rsplit('/', 1)[-1]}"),
                    price=_price(item.get("price", "0.00")),
                    sku=item.get("sku"),
                    image_url=item.get("imageUrl"),
                    inventory_quantity=_int(item.get("inventoryQuantity") or 0, "inventoryQuantity"),
                    variant_id=variant_id,
                )
                old = shop.products.get(gid)
                if old is not None:
                    shop.variants.pop(old.variant_id, None)
                shop.products[gid] = product
                shop.variants[variant_id] = gid
                created.append(product)
            return created

    # -- discounts -----------------------------------------------------------------------------

    def new_discount_id(self) -> str:
        return f"{DISCOUNT_GID}{self.new_id()}"

    # -- faults --------------------------------------------------------------------------------

    def set_faults(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a ``PUT /_sim/faults`` payload; absent keys keep their value (merge semantics).

        ``shop`` scopes the settings to one shop (null values there mean "inherit global");
        ``next`` appends deterministic faults to that scope's queue (``clearNext`` empties it
        first); ``seed`` reseeds the shared RNG.
        """
        with self.lock:
            shop_name = payload.get("shop")
            target: FaultConfig
            queue: deque[InjectedFault]
            if shop_name is not None:
                shop = self.shops.get(str(shop_name))
                if shop is None:
                    raise UnknownShopError(f"unknown shop {shop_name!r}")
                target, queue = shop.faults, shop.next_faults
            else:
                target, queue = self.faults, self.next_faults
            defaults = FaultConfig.global_defaults()
            for key, attr in _FAULT_PAYLOAD_KEYS.items():
                if key not in payload:
                    continue
                value: Any
                if key in ("latencyMs", "timeoutSleepS"):
                    value = None if payload[key] is None else _float(payload[key], key)
                    if value is not None and value < 0:
                        raise SimulatorInputError(f"{key} must not be negative")
                elif key == "throttleStatusCode":
                    value = payload[key]
                    if value not in (None, 200, 429):
                        raise SimulatorInputError("throttleStatusCode must be 200 or 429")
                else:
                    value = _rate(payload, key)
                if value is None and shop_name is None:
                    value = getattr(defaults, attr)
                setattr(target, attr, value)
            if "seed" in payload:
                self.rng.seed(payload["seed"])
            if payload.get("clearNext"):
                queue.clear()
            next_items = payload.get("next")
            if next_items is not None:
                if not isinstance(next_items, list):
                    raise SimulatorInputError("next must be a list of fault entries")
                for raw in next_items:
                    fault = InjectedFault.parse(raw)
                    count = _int(raw.get("count", 1), "count") if isinstance(raw, Mapping) else 1
                    queue.extend(fault for _ in range(count))
            return self.faults_json()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = FaultConfig.global_defaults()
            self.next_faults.clear()
            for shop in self.shops.values():
                shop.faults = FaultConfig()
                shop.next_faults.clear()

    def faults_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "global": {**self.faults.to_json(), "next": len(self.next_faults)},
                "shops": {
                    name: {**shop.faults.to_json(), "next": len(shop.next_faults)}
                    for name, shop in self.shops.items()
                    if shop.next_faults or any(v is not None for v in shop.faults.to_json().values())
                },
            }

    def resolve_faults(self, shop_name: str) -> ResolvedFaults:
        g = self.faults
        shop = self.shops.get(shop_name)
        s = shop.faults if shop is not None else FaultConfig()

        def pick(local: float | None, glob: float | None) -> float:
            return float(local if local is not None else (glob or 0.0))

        return ResolvedFaults(
            rates=(
                pick(s.error5xx, g.error5xx),
                pick(s.throttle429, g.throttle429),
                pick(s.timeout, g.timeout),
                pick(s.malformed, g.malformed),
            ),
            latency_ms=pick(s.latency_ms, g.latency_ms),
            timeout_sleep_s=pick(s.timeout_sleep_s, g.timeout_sleep_s),
            throttle_status_code=int(pick(s.throttle_status_code, g.throttle_status_code) or 200),
        )

    def choose_fault(self, shop_name: str, resolved: ResolvedFaults) -> InjectedFault | None:
        """The fault for this request: the shop's queue, then the global queue, then a random draw."""
        with self.lock:
            shop = self.shops.get(shop_name)
            if shop is not None and shop.next_faults:
                return shop.next_faults.popleft()
            if self.next_faults:
                return self.next_faults.popleft()
            if not any(resolved.rates):
                return None
            draw = self.rng.random()
            acc = 0.0
            for kind, rate in zip(FAULT_KINDS, resolved.rates, strict=True):
                acc += rate
                if draw < acc:
                    return InjectedFault(kind)
            return None


def _seed_status(type_: str, item: Mapping[str, Any]) -> str | None:
    """Status of a seeded metaobject: ``status`` if given, else ACTIVE for a publishable type.

    Seeds stand for what the legacy app wrote, and it created its bundles ACTIVE.
    """
    status = item.get("status")
    if status is None:
        return STATUS_ACTIVE if default_status(type_) is not None else None
    if status not in METAOBJECT_STATUSES:
        raise SimulatorInputError(f"status must be one of {sorted(METAOBJECT_STATUSES)} or null")
    return str(status)


def _positive(payload: Mapping[str, Any], key: str) -> float:
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SimulatorInputError(f"{key} must be a positive number")
    return float(value)


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimulatorInputError(f"{key} must be a number, got {value!r}")
    return float(value)


def _int(value: Any, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SimulatorInputError(f"{key} must be an integer, got {value!r}") from exc


def _price(value: Any) -> str:
    """Shopify's ``MoneyV2``-less ``price`` scalar is a decimal string like ``"19.99"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return f"{value:.2f}"
    raise SimulatorInputError(f"price must be a string or number, got {value!r}")


__all__ = [
    "DISCOUNT_GID",
    "FAULT_KINDS",
    "METAOBJECT_DEFINITIONS",
    "METAOBJECT_GID",
    "PLAN_RESTORE_RATES",
    "PRODUCT_BUNDLES_DEFINITION",
    "PRODUCT_GID",
    "STATUS_ACTIVE",
    "STATUS_DRAFT",
    "VARIANT_GID",
    "CostBucket",
    "Discount",
    "FaultConfig",
    "FieldDefinition",
    "InjectedFault",
    "Metaobject",
    "MetaobjectDefinition",
    "Product",
    "ResolvedFaults",
    "ShopState",
    "SimulatorInputError",
    "SimulatorState",
    "SimulatorStats",
    "UnknownShopError",
    "default_status",
    "now_iso",
    "parse_fields",
]
