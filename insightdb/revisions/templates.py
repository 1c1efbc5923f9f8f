"""The text of new revision files: function style (default) and Beanie style.

``insightdb migrate new`` renders one of these with :func:`render`; the result is a
module that runs as written (it changes nothing until edited) and whose docstring carries
the message, the revision, what it revises and the date.
"""

from __future__ import annotations

import json
from string import Template

__all__ = ["STYLES", "render"]

_HEADER = '''"""${message}

Revision: ${revision}
Revises: ${revises}
Date: ${date}
"""

from __future__ import annotations
'''

_FUNCTION = (
    _HEADER
    + '''
from insightdb.migrations import MigrationContext

revision = ${revision_literal}
down_revision = ${down_revision_literal}

# Uncomment to commit each batch and its checkpoint in one transaction (needs a deployment
# that supports transactions: a replica set, a sharded cluster or the embedded server).
# use_transaction = True


async def upgrade(ctx: MigrationContext) -> None:
    """Apply this revision to the ${group} database."""
${examples}

async def downgrade(ctx: MigrationContext) -> None:
    """Undo upgrade() on the ${group} database."""
'''
)

_BEANIE = (
    _HEADER
    + '''
from beanie import Document

from insightdb.migrations import MigrationContext, free_fall, iterative

revision = ${revision_literal}
down_revision = ${down_revision_literal}


# Frozen copies of the models as stored before and after this revision. Copy the fields
# here instead of importing the application's models: those keep changing, this file must
# not. The output model defines the whole stored document: declare every field to keep.
class Before(Document):
    # name: str

    class Settings:
        name = "collection_name"


class After(Document):
    # name: str
    # display_name: str

    class Settings:
        name = "collection_name"


class Forward:
    """Steps run by `insightdb migrate up`, in the order they are defined."""

    @iterative(batch_size=1000)
    async def convert(self, input_document: Before, output_document: After) -> None:
        """Called per document; attributes set on output_document override the input's."""
        # output_document.display_name = input_document.name.title()

    @free_fall()
    async def finish(self, ctx: MigrationContext) -> None:
        """Arbitrary code: ctx.database, ctx.session, ctx.logger and the batch helpers."""


class Backward:
    """Steps run by `insightdb migrate down`, in the order they are defined."""

    @free_fall()
    async def undo(self, ctx: MigrationContext) -> None:
        """Undo Forward."""
'''
)

STYLES = {"function": _FUNCTION, "beanie": _BEANIE}
"""The template of each ``--style``."""

# The commented examples of a function-style upgrade(), on a collection of that group: a
# customer revision must not suggest touching the admin database's users.
_EXAMPLES = {
    "admin": """\
    # Examples (ctx.database is the admin database):
    #   await ctx.database["users"].create_index("role", name="role_1")
    #   await ctx.update_with_pipeline(
    #       "users", {"status": {"$exists": False}}, [{"$set": {"status": "active"}}]
    #   )
    #   await ctx.for_each("users", lambda doc: {"$set": {"email": doc["email"].lower()}})
""",
    "customer": """\
    # Examples (ctx.database is the customer database; a migration sees every tenant's
    # documents, so keep tenant_id in indexes and never move a document between tenants):
    #   await ctx.database["clients"].create_index(
    #       [("tenant_id", 1), ("name", 1)], name="tenant_id_1_name_1"
    #   )
    #   await ctx.update_with_pipeline(
    #       "clients", {"status": {"$exists": False}}, [{"$set": {"status": "active"}}]
    #   )
    #   await ctx.for_each("clients", lambda doc: {"$set": {"name": doc["name"].strip()}})
""",
}


def render(
    style: str,
    *,
    message: str,
    revision: str,
    down_revisions: tuple[str, ...],
    date: str,
    group: str,
) -> str:
    """Return the text of a new revision file.

    Args:
        style: ``"function"`` or ``"beanie"``.
        message: The one-line description (the docstring's first line).
        revision: The new revision id.
        down_revisions: The revisions it revises (none for the first, several to merge).
        date: The creation time, as text.
        group: ``"admin"`` or ``"customer"``.
    """
    if not down_revisions:
        down_literal = "None"
    elif len(down_revisions) == 1:
        down_literal = _quoted(down_revisions[0])
    else:
        down_literal = "(" + ", ".join(_quoted(r) for r in down_revisions) + ")"
    return Template(STYLES[style]).substitute(
        message=message.replace('"""', "'''"),
        revision=revision,
        revises=", ".join(down_revisions) or "<base>",
        date=date,
        group=group,
        examples=_EXAMPLES.get(group, ""),
        revision_literal=_quoted(revision),
        down_revision_literal=down_literal,
    )


def _quoted(text: str) -> str:
    # Double quotes, as ruff format writes them; JSON escapes are valid Python escapes.
    return json.dumps(text)
