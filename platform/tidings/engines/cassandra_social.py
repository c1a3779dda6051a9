"""Contacts and Groups on Cassandra (parts of ``CassandraUserStore``)."""

from __future__ import annotations

from collections.abc import Sequence

from tidings.core.model import Group, Role
from tidings.engines.cassandra_schema import Cql, Query, Statements
from tidings.errors import LimitExceeded


def social_statements(ks: str) -> dict[str, tuple[str, bool]]:
    """The statements of ``CassandraContacts`` and ``CassandraGroups``."""
    return {
        "contacts.list": (
            f"SELECT contact_id FROM {ks}.contacts WHERE user_id = ?",
            False,
        ),
        "contacts.put": (
            f"INSERT INTO {ks}.contacts (user_id, contact_id) VALUES (?, ?)",
            False,
        ),
        "contacts.delete": (
            f"DELETE FROM {ks}.contacts WHERE user_id = ? AND contact_id = ?",
            False,
        ),
        "contacts.has": (
            f"SELECT contact_id FROM {ks}.contacts WHERE user_id = ? AND contact_id = ?",
            False,
        ),
        "group.put": (
            f"INSERT INTO {ks}.groups (group_id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
            False,
        ),
        "group.member": (
            f"INSERT INTO {ks}.groups (group_id, user_id, role) VALUES (?, ?, ?)",
            False,
        ),
        "group.get": (
            f"SELECT user_id, role, name, created_by, created_at FROM {ks}.groups "
            "WHERE group_id = ?",
            False,
        ),
        "group.remove": (
            f"DELETE FROM {ks}.groups WHERE group_id = ? AND user_id = ?",
            False,
        ),
    }


class CassandraContacts:
    """Contact lists of ``CassandraUserStore``."""

    cql: Cql
    q: Statements

    async def add_contacts(
        self, user_id: str, contact_ids: Sequence[str], max_contacts: int
    ) -> None:
        rows = await self.cql.run(self.q["contacts.list"], (user_id,))
        current = {str(r["contact_id"]) for r in rows}
        new = [c for c in dict.fromkeys(contact_ids) if c not in current]
        if len(current) + len(new) > max_contacts:
            raise LimitExceeded(f"a contact list holds at most {max_contacts} entries")
        if new:  # one partition: a single unlogged batch
            await self.cql.batch(
                "add contacts", [(self.q["contacts.put"], (user_id, c)) for c in new]
            )

    async def remove_contact(self, user_id: str, contact_id: str) -> None:
        await self.cql.run(self.q["contacts.delete"], (user_id, contact_id))

    async def list_contacts(self, user_id: str) -> list[str]:
        rows = await self.cql.run(self.q["contacts.list"], (user_id,))
        return [str(r["contact_id"]) for r in rows]

    async def has_contact(self, user_id: str, contact_id: str) -> bool:
        return await self.cql.one(self.q["contacts.has"], (user_id, contact_id)) is not None


class CassandraGroups:
    """Groups and their members of ``CassandraUserStore``."""

    cql: Cql
    q: Statements

    async def create_group(self, group: Group) -> None:
        parts: list[tuple[Query, Sequence[object]]] = [
            (self.q["group.put"], (group.id, group.name, group.created_by, group.created_at))
        ]
        parts += [
            (self.q["group.member"], (group.id, uid, role.value))
            for uid, role in group.members.items()
        ]
        await self.cql.batch("create a group", parts)

    async def get_group(self, group_id: str) -> Group | None:
        rows = await self.cql.run(self.q["group.get"], (group_id,))
        if not rows or rows[0]["name"] is None:
            return None
        head = rows[0]
        return Group(
            group_id,
            str(head["name"]),
            str(head["created_by"]),
            float(head["created_at"]),
            {str(r["user_id"]): Role(str(r["role"])) for r in rows if r["user_id"] is not None},
        )

    async def set_member(self, group_id: str, user_id: str, role: Role) -> None:
        await self.cql.run(self.q["group.member"], (group_id, user_id, role.value))

    async def remove_member(self, group_id: str, user_id: str) -> None:
        await self.cql.run(self.q["group.remove"], (group_id, user_id))
