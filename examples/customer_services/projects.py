"""A tenant's projects, each for one of its clients and with an account manager — a
platform user in the admin database, referenced with ``CrossRef`` and resolved in one
query per page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from beanie import PydanticObjectId
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from examples.common.errors import not_found
from examples.common.pagination import Page, PageParams, page_params
from examples.common.tokens import Claims
from examples.customer_services.clients import WRITERS
from examples.customer_services.schemas import ProjectIn, ProjectOut, ProjectPatch, ProjectStatus
from insightdb.runtime.references import resolve
from models.admin.user import User
from models.customer.client import Client
from models.customer.project import Project

__all__ = ["router"]

router = APIRouter(prefix="/projects", tags=["projects"])


def _invalid(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, {"error": "invalid_reference", "message": message}
    )


async def _check_client(client_id: PydanticObjectId) -> None:
    if await Client.get(client_id) is None:  # scoped: another tenant's client is unknown
        raise _invalid("client_id names no client of this tenant")


async def _check_manager(user_id: PydanticObjectId) -> None:
    manager = await User.get(user_id)
    if manager is None or manager.tenant_id is not None:
        raise _invalid("account_manager_id names no platform user")


@router.get("")
async def list_projects(
    page: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[ProjectStatus | None, Query(alias="status")] = None,
    client_id: PydanticObjectId | None = None,
    account_manager_id: PydanticObjectId | None = None,
    sort: Literal[
        "title", "-title", "created_at", "-created_at", "budget_cents", "-budget_cents"
    ] = "title",
) -> Page[ProjectOut]:
    """The tenant's projects, filtered and sorted, with their account managers."""
    query: dict[str, Any] = {}
    if status_ is not None:
        query["status"] = status_
    if client_id is not None:
        query["client_id"] = client_id
    if account_manager_id is not None:
        query["account_manager"] = account_manager_id  # a CrossRef is stored as the id
    found = Project.find(query)
    total = await found.count()
    order = sort if sort.startswith("-") else "+" + sort
    projects = await found.sort(order, "+_id").skip(page.skip).limit(page.per_page).to_list()
    await resolve(projects, "account_manager")  # one query to the admin database
    return Page(
        items=[ProjectOut.of(p) for p in projects],
        page=page.page,
        per_page=page.per_page,
        total=total,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(_: Annotated[Claims, Depends(WRITERS)], body: ProjectIn) -> ProjectOut:
    """Create a project for one of the tenant's clients."""
    await _check_client(body.client_id)
    if body.account_manager_id is not None:
        await _check_manager(body.account_manager_id)
    project = Project(
        title=body.title,
        client_id=body.client_id,
        status=body.status,
        budget_cents=body.budget_cents,
        account_manager=body.account_manager_id,
    )
    await project.insert()
    await resolve([project], "account_manager")
    return ProjectOut.of(project)


async def _project(project_id: PydanticObjectId) -> Project:
    project = await Project.get(project_id)
    if project is None:
        raise not_found("no such project")
    return project


@router.get("/{project_id}")
async def read_project(project_id: PydanticObjectId) -> ProjectOut:
    """One project, its account manager read from the admin database."""
    project = await _project(project_id)
    await resolve([project], "account_manager")
    return ProjectOut.of(project)


@router.patch("/{project_id}")
async def change_project(
    _: Annotated[Claims, Depends(WRITERS)], project_id: PydanticObjectId, body: ProjectPatch
) -> ProjectOut:
    """Change a project's title, status, budget or account manager."""
    project = await _project(project_id)
    changes = body.model_dump(exclude_none=True)
    manager = changes.pop("account_manager_id", None)
    if manager is not None:
        await _check_manager(manager)
        changes["account_manager"] = manager
    if changes:
        await project.set(changes)
        project = await _project(project_id)
    await resolve([project], "account_manager")
    return ProjectOut.of(project)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_project(
    _: Annotated[Claims, Depends(WRITERS)], project_id: PydanticObjectId
) -> Response:
    """Delete a project."""
    await (await _project(project_id)).delete()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
