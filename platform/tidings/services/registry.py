"""All services of one process, built once by ``tidings.bootstrap``."""

from __future__ import annotations

from dataclasses import dataclass

from tidings.services.auth import AuthService
from tidings.services.context import Context
from tidings.services.delivery import DeliveryWorker
from tidings.services.directory import Directory
from tidings.services.groups import GroupService
from tidings.services.keys import KeyService
from tidings.services.media import MediaService
from tidings.services.push_tokens import PushTokenService
from tidings.services.router import Router
from tidings.services.users import UserService


@dataclass
class Services:
    ctx: Context
    directory: Directory
    auth: AuthService
    keys: KeyService
    users: UserService
    groups: GroupService
    router: Router
    media: MediaService
    delivery: DeliveryWorker
    push_tokens: PushTokenService

    @classmethod
    def build(cls, ctx: Context) -> Services:
        directory = Directory(ctx)
        return cls(
            ctx=ctx,
            directory=directory,
            auth=AuthService(ctx, directory),
            keys=KeyService(ctx),
            users=UserService(ctx),
            groups=GroupService(ctx),
            router=Router(ctx, directory),
            media=MediaService(ctx),
            delivery=DeliveryWorker(ctx, lanes=4),
            push_tokens=PushTokenService(ctx),
        )
