"""The chat websocket: read a message, check the user may touch what it names, call one
service for it.

It stays thin on purpose. What a message may say is protocol.py; whether the sign-in still
holds, and the page's language, are the socket's middleware (sockets.SocketSession); the
work is done by turns.py and generation.py. Generation runs as its own task, never inside
`receive`, so Stop and disconnect are handled at once even while tokens flow. Everything
sent back is HTML for htmx's out-of-band swaps (frames.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import fanout, figures, frames, generation, protocol, services, sockets, turns
from .models import Conversation, Message
from .replay import replay_log
from .selectors import get_conversation_for_user, get_message_for_user

log = logging.getLogger(__name__)

NOT_FOUND = gettext_lazy("That conversation was not found.")
ACCOUNT_CLOSED = sockets.ACCOUNT_CLOSED


class ChatConsumer(AsyncWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # Refused before accept: the handshake fails.
            return
        # Suspending the account, or signing out of this session, closes this socket, from
        # any process.
        for group in sockets.account_groups(self.scope):
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self._leave()
        for group in sockets.account_groups(self.scope):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def account_closed(self, event: dict[str, Any]) -> None:
        """The account was suspended, or this sign-in ended: this socket ends now."""
        await self.close(code=ACCOUNT_CLOSED)

    async def spend_changed(self, event: dict[str, Any]) -> None:
        """The person's spend changed (sockets.spend_changed): this page's meter, anew."""
        if self.group is not None and event.get("shown_in") == self.group:
            return  # the turn's own frame showed it here already
        user = self.scope["user"]
        frame = await database_sync_to_async(lambda: frames.spend(figures.spend_for(user)))()
        await self.send(text_data=frame)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            request = protocol.parse(text_data)
        except protocol.Unreadable as unreadable:
            await self.send(text_data=frames.error(unreadable.message))
            return
        handler: Callable[[Any], Any] = getattr(self, f"on_{type(request).__name__.lower()}")
        await handler(request)

    # --- one handler per message type (protocol.py) ---------------------------------------
    async def on_subscribe(self, request: protocol.Subscribe) -> None:
        conversation = await self._conversation(request.conversation)
        if conversation is None:
            await self.send(text_data=frames.error(str(NOT_FOUND)))
            return
        await self._watch(conversation)
        for reply_id, after in request.resume:
            reply = await self._message(reply_id, Message.Role.ASSISTANT)
            if reply is not None and reply.conversation_id == conversation.pk:
                await self._resume(reply, after)

    async def on_resume(self, request: protocol.Resume) -> None:
        reply = await self._message(request.reply, Message.Role.ASSISTANT)
        if reply is None:
            await self.send(text_data=frames.error(_("That reply was not found.")))
            return
        await self._watch(reply.conversation)
        await self._resume(reply, request.after)

    async def _resume(self, reply: Message, after: object) -> None:
        """Bring the page's copy of `reply` up to date: the batches after `after` from the
        replay log; if the log does not reach back that far, the last checkpoint and the
        batches after it; if the reply has ended, the reply as it ended."""
        if not reply.is_active:
            await self.send(text_data=await database_sync_to_async(frames.message_replaced)(reply))
            return
        seq = after if isinstance(after, int) and not isinstance(after, bool) else 0
        log_ = replay_log()
        batches = await log_.since(reply.pk, seq)
        if batches is None:
            batches = await log_.since(reply.pk, reply.stream_seq) or []
            # Rendering the whole checkpoint is a reply's worth of work: off the event loop.
            reset = await sync_to_async(frames.stream_reset, thread_sensitive=False)(
                reply.pk, reply.stream_seq, reply.content
            )
            await self.send(text_data=reset)
        for _seq, frame in batches:
            await self.send(text_data=frame)

    async def on_send(self, request: protocol.Send) -> None:
        restore = protocol.text_of(request.text)
        try:
            # Checked before a conversation is opened or looked up.
            turns.validate_text(request.text)
            turns.validate_client_id(request.client_id)
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message, restore=restore))
            return
        if request.opens_conversation:
            await self._open_with(request)
            return
        conversation = await self._conversation(request.conversation)
        if conversation is None:
            await self.send(text_data=frames.error(str(NOT_FOUND), restore=restore))
            return
        try:
            if request.model:
                conversation = await self._switch_model(conversation, request.model)
            await self._watch(conversation)
            turn = await database_sync_to_async(turns.turn_start)(
                user=self.scope["user"],
                conversation=conversation,
                text=request.text,
                client_id=request.client_id,
            )
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message, restore=restore))
            return
        await generation.launch(turn)

    async def _switch_model(self, conversation: Conversation, model: str) -> Conversation:
        before = conversation.model
        conversation = await database_sync_to_async(services.conversation_set_model)(
            conversation=conversation, model=model
        )
        if conversation.model != before:
            frame = await database_sync_to_async(frames.model_switched)(conversation)
            await self.send(text_data=frame)
        return conversation

    async def _open_with(self, request: protocol.Send) -> None:
        """A first message opens its conversation; refused, it leaves none behind."""
        try:
            turn = await database_sync_to_async(turns.turn_start_new_conversation)(
                user=self.scope["user"],
                model=request.model,
                text=request.text,
                client_id=request.client_id,
            )
        except services.TurnRefused as refused:
            restore = protocol.text_of(request.text)
            await self.send(text_data=frames.error(refused.message, restore=restore))
            return
        await self._watch(turn.conversation)
        opened_frame = await database_sync_to_async(frames.conversation_opened)(turn.conversation)
        await self.send(text_data=opened_frame)
        await generation.launch(turn)

    async def on_stop(self, request: protocol.Stop) -> None:
        reply = await self._message(request.reply, Message.Role.ASSISTANT)
        if reply is None:
            await self.send(text_data=frames.error(_("There is no reply to stop.")))
            return
        await generation.stop(reply)

    async def on_followup(self, request: protocol.FollowUp) -> None:
        """Retry, Continue or Regenerate: a new request for an existing reply of the user's."""
        start, missing = {
            "retry": (turns.turn_retry, _("There is no reply to retry.")),
            "continue": (turns.turn_continue, _("There is no reply to continue.")),
            "regenerate": (turns.turn_regenerate, _("There is no reply to regenerate.")),
        }[request.kind]
        reply = await self._message(request.reply, Message.Role.ASSISTANT)
        if reply is None:
            await self.send(text_data=frames.error(missing))
            return
        await self._watch(reply.conversation)
        try:
            turn = await database_sync_to_async(start)(user=self.scope["user"], reply=reply)
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message))
            return
        await generation.launch(turn)

    async def on_edit(self, request: protocol.Edit) -> None:
        message = await self._message(request.message, Message.Role.USER)
        if message is None:
            await self.send(text_data=frames.error(_("That message was not found.")))
            return
        await self._watch(message.conversation)
        try:
            turn = await database_sync_to_async(turns.turn_edit)(
                user=self.scope["user"],
                message=message,
                text=request.text,
                client_id=request.client_id,
            )
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message))
            return
        await generation.launch(turn)

    # --- the user's own objects -----------------------------------------------------------
    async def _conversation(self, conversation_id: object) -> Conversation | None:
        try:
            return await database_sync_to_async(get_conversation_for_user)(
                self.scope["user"], conversation_id
            )
        except Http404:
            return None

    async def _message(self, message_id: object, role: str) -> Message | None:
        try:
            return await database_sync_to_async(get_message_for_user)(
                self.scope["user"], message_id, role=role
            )
        except Http404:
            return None

    # --- the conversation this socket watches ---------------------------------------------
    async def _watch(self, conversation: Conversation) -> None:
        group = fanout.group_name(conversation.pk)
        if group == self.group:
            return
        await self._leave()
        self.group = group
        fanout.subscribe(group, self)
        if settings.CHANNEL_LAYER_SHARED:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _leave(self) -> None:
        if self.group is None:
            return
        fanout.unsubscribe(self.group, self)
        if settings.CHANNEL_LAYER_SHARED:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.group = None

    # --- frames in ------------------------------------------------------------------------
    async def deliver(self, frame: str) -> None:
        """A frame for this socket from a generation in this process."""
        await self.send(text_data=frame)

    async def relay_frame(self, event: dict[str, Any]) -> None:
        """A frame from another process, through the channel layer."""
        if event.get("origin") != settings.PROCESS_ID:
            await self.send(text_data=event["frame"])
