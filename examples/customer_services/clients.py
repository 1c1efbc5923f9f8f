"""A tenant's clients: list (filter, sort, paginate), create — with a billing record in the
admin database in one transaction — read, change and delete."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from beanie import PydanticObjectId
from fastapi import APIRouter, Depends, Query, Response, status

import insightdb
from examples.common.auth import require_roles
from examples.common.errors import not_found
from examples.common.pagination import Page, PageParams, page_params
from examples.common.tokens import Claims
from examples.customer_services.schemas import ClientIn, ClientOut, ClientPatch, ClientStatus
from insightdb import current_tenant
from models.admin.billing import BillingRecord
from models.customer.client import Client

__all__ = ["router"]

router = APIRouter(prefix="/clients", tags=["clients"])

WRITERS = require_roles("owner", "admin")


@router.get("")
async def list_clients(
    page: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[ClientStatus | None, Query(alias="status")] = None,
    name_prefix: Annotated[str | None, Query(max_length=100)] = None,
    sort: Literal["name", "-name", "created_at", "-created_at"] = "name",
) -> Page[ClientOut]:
    """The tenant's clients, filtered by status and name prefix."""
    query: dict[str, Any] = {}
    if status_ is not None:
        query["status"] = status_
    if name_prefix:
        query["name"] = {"$regex": "^" + re.escape(name_prefix)}
    found = Client.find(query)  # scoped: only the current tenant's clients
    total = await found.count()
    order = sort if sort.startswith("-") else "+" + sort
    clients = await found.sort(order, "+_id").skip(page.skip).limit(page.per_page).to_list()
    return Page(
        items=[ClientOut.of(c) for c in clients],
        page=page.page,
        per_page=page.per_page,
        total=total,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_client(_: Annotated[Claims, Depends(WRITERS)], body: ClientIn) -> ClientOut:
    """Create a client; with ``billing``, also its billing record, in one transaction.

    The client goes to the customer database and the billing record to the admin
    database inside one ``insightdb.transaction()``: if the second write fails (a billing
    ``reference`` already used is a 409), the client is not created either.
    """
    client = Client(name=body.name, status=body.status)
    if body.billing is None:
        await client.insert()
        return ClientOut.of(client)
    async with insightdb.transaction():
        await client.insert()
        assert client.id is not None
        await BillingRecord(
            reference=body.billing.reference,
            tenant_id=current_tenant(),
            client_id=client.id,
            plan=body.billing.plan,
            amount_cents=body.billing.amount_cents,
        ).insert()
    return ClientOut.of(client, billing_reference=body.billing.reference)


async def _client(client_id: PydanticObjectId) -> Client:
    client = await Client.get(client_id)  # another tenant's id finds nothing: 404
    if client is None:
        raise not_found("no such client")
    return client


@router.get("/{client_id}")
async def read_client(client_id: PydanticObjectId) -> ClientOut:
    """One client of the tenant."""
    return ClientOut.of(await _client(client_id))


@router.patch("/{client_id}")
async def change_client(
    _: Annotated[Claims, Depends(WRITERS)], client_id: PydanticObjectId, body: ClientPatch
) -> ClientOut:
    """Rename a client or change its status."""
    client = await _client(client_id)
    changes = body.model_dump(exclude_none=True)
    if changes:
        await client.set(changes)
    return ClientOut.of(client)


@router.delete("/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_client(
    _: Annotated[Claims, Depends(WRITERS)], client_id: PydanticObjectId
) -> Response:
    """Delete a client."""
    await (await _client(client_id)).delete()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
