"""The chat websocket: authenticate, check ownership, forward to the turn service.

It stays thin on purpose. Generation runs as its own task (generation.py), never inside
`receive`, so Stop and disconnect are handled at once even while tokens flow.

Messages from the page are JSON objects with a `type`:
  {"type": "subscribe", "conversation": ID, "resume": {REPLY: SEQ, ...}}
                                              watch a conversation's live frames; for each
                                              reply being written, send the batches after
                                              the last one the page has
  {"type": "resume", "reply": ID, "after": SEQ}   the page missed batches: send them again
  {"type": "send", "conversation": ID or "", "message": TEXT, "client_id": ID}
  {"type": "stop", "reply": ID}
  {"type": "retry", "reply": ID}       answer a failed reply's question again (a new turn)
  {"type": "continue", "reply": ID}    let a reply cut off at the length limit go on
  {"type": "regenerate", "reply": ID}  a new answer in place of the last reply
  {"type": "edit", "message": ID, "text": TEXT, "client_id": ID}
                                       send an edited message in place of it and all after
Everything sent back is HTML for htmx's out-of-band swaps (frames.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.http import Http404
from django.utils import translation
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import figures, frames, generation, hub, services
from .models import Conversation, Message
from .replay import replay_log
from .selectors import get_conversation_for_user

log = logging.getLogger(__name__)

NOT_FOUND = gettext_lazy("That conversation was not found.")
ACCOUNT_CLOSED = 4003  # the close code a suspended account's sockets get
MAX_RESUMED = 10  # replies one subscribe may resume (a person has at most a few active)


class ChatConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    language: str = settings.LANGUAGE_CODE

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # Refused before accept: the handshake fails.
            return
        self.language = _language(self.scope)
        # Suspending the account, or signing out of this session, closes this socket, from
        # any process.
        for group in self._account_groups():
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self._leave()
        for group in self._account_groups():
            await self.channel_layer.group_discard(group, self.channel_name)

    def _account_groups(self) -> list[str]:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return []
        groups = [hub.user_group(user.pk)]
        session = self.scope.get("session")
        if session is not None and session.session_key:
            groups.append(hub.session_group(session.session_key))
        return groups

    async def account_closed(self, event: dict[str, Any]) -> None:
        """The account was suspended, or this sign-in ended: this socket ends now."""
        await self.close(code=ACCOUNT_CLOSED)

    async def spend_changed(self, event: dict[str, Any]) -> None:
        """The person's spend changed (hub.spend_changed): this page's meter, anew."""
        if self.group is not None and event.get("shown_in") == self.group:
            return  # the turn's own frame showed it here already
        await self.send(text_data=await database_sync_to_async(self._spend_frame)())

    def _spend_frame(self) -> str:
        with translation.override(self.language):
            return frames.spend(figures.spend_for(self.scope["user"]))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Everything this message causes, a generation it starts included, speaks the
        # page's language.
        with translation.override(self.language):
            await self._receive(text_data, bytes_data)

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        if not await self._still_active():
            await self.close(code=ACCOUNT_CLOSED)
            return
        if text_data is None:
            await self.send(text_data=frames.error(_("Messages must be text.")))
            return
        if len(text_data) > settings.WS_MAX_MESSAGE_CHARS:
            await self.send(text_data=frames.error(_("That message is too large to send.")))
            return
        try:
            payload = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            payload = None
        if not isinstance(payload, dict) or not _readable(payload):
            await self.send(text_data=frames.error(_("That message could not be read.")))
            return
        kind = payload.get("type")
        handler = {
            "subscribe": self.on_subscribe,
            "resume": self.on_resume,
            "send": self.on_send,
            "stop": self.on_stop,
            "retry": self.on_retry,
            "continue": self.on_continue,
            "regenerate": self.on_regenerate,
            "edit": self.on_edit,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self.send(text_data=frames.error(_("Unknown request.")))
            return
        await handler(payload)

    # --- message types --------------------------------------------------------------------
    async def on_subscribe(self, payload: dict[str, Any]) -> None:
        conversation = await self._conversation(payload.get("conversation"))
        if conversation is None:
            await self.send(text_data=frames.error(NOT_FOUND))
            return
        await self._watch(conversation)
        resume = payload.get("resume")
        if isinstance(resume, dict):
            for reply_id, after in list(resume.items())[:MAX_RESUMED]:
                reply = await self._reply(reply_id)
                if reply is not None and reply.conversation_id == conversation.pk:
                    await self._resume(reply, after)

    async def on_resume(self, payload: dict[str, Any]) -> None:
        reply = await self._reply(payload.get("reply"))
        if reply is None:
            await self.send(text_data=frames.error(_("That reply was not found.")))
            return
        await self._watch(await database_sync_to_async(lambda: reply.conversation)())
        await self._resume(reply, payload.get("after"))

    async def _resume(self, reply: Message, after: object) -> None:
        """Bring the page's copy of `reply` up to date: the batches after `after` from the
        replay log; if the log does not reach back that far, the last checkpoint and the
        batches after it; if the reply has ended, the reply as it ended."""
        if not reply.is_active:
            await self.send(text_data=await database_sync_to_async(frames.message_replaced)(reply))
            return
        seq = after if isinstance(after, int) and not isinstance(after, bool) else 0
        log = replay_log()
        batches = await log.since(reply.pk, seq)
        if batches is None:
            batches = await log.since(reply.pk, reply.stream_seq) or []
            # Rendering the whole checkpoint is a reply's worth of work: off the event loop.
            reset = await sync_to_async(frames.stream_reset, thread_sensitive=False)(
                reply.pk, reply.stream_seq, reply.content
            )
            await self.send(text_data=reset)
        for _seq, frame in batches:
            await self.send(text_data=frame)

    async def on_send(self, payload: dict[str, Any]) -> None:
        text = payload.get("message")
        conversation_id = payload.get("conversation")
        try:
            services.validate_text(text)
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message, restore=_str(text)))
            return
        client_id = _str(payload.get("client_id"))
        if not services.CLIENT_ID_RE.match(client_id):  # before a conversation is opened
            await self.send(
                text_data=frames.error(
                    _("This message could not be sent. Reload the page and try again."),
                    restore=_str(text),
                )
            )
            return
        model = _str(payload.get("model")) or None
        # Only no conversation at all means a new one: [], 0 or {} is an id that is wrong.
        if conversation_id is None or conversation_id == "":
            await self._open_with(text, client_id, model)
            return
        conversation = await self._conversation(conversation_id)
        if conversation is None:
            await self.send(text_data=frames.error(NOT_FOUND, restore=_str(text)))
            return
        try:
            if model:
                before = conversation.model
                conversation = await database_sync_to_async(services.conversation_set_model)(
                    conversation=conversation, model=model
                )
                if conversation.model != before:
                    await self.send(
                        text_data=await database_sync_to_async(frames.model_switched)(conversation)
                    )
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message, restore=_str(text)))
            return
        await self._watch(conversation)
        try:
            turn = await database_sync_to_async(services.turn_start)(
                user=self.scope["user"],
                conversation=conversation,
                text=text,
                client_id=client_id,
            )
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message, restore=_str(text)))
            return
        await generation.launch(turn)

    async def _open_with(self, text: str, client_id: str, model: str | None) -> None:
        """A first message opens its conversation; refused, it leaves none behind."""
        try:
            turn = await database_sync_to_async(services.turn_start_new_conversation)(
                user=self.scope["user"], model=model, text=text, client_id=client_id
            )
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message, restore=text))
            return
        await self._watch(turn.conversation)
        opened_frame = await database_sync_to_async(frames.conversation_opened)(turn.conversation)
        await self.send(text_data=opened_frame)
        await generation.launch(turn)

    async def on_stop(self, payload: dict[str, Any]) -> None:
        reply = await self._reply(payload.get("reply"))
        if reply is None:
            await self.send(text_data=frames.error(_("There is no reply to stop.")))
            return
        await generation.stop(reply.pk)

    async def on_retry(self, payload: dict[str, Any]) -> None:
        await self._follow_up(payload, services.turn_retry, _("There is no reply to retry."))

    async def on_continue(self, payload: dict[str, Any]) -> None:
        await self._follow_up(payload, services.turn_continue, _("There is no reply to continue."))

    async def on_regenerate(self, payload: dict[str, Any]) -> None:
        await self._follow_up(
            payload, services.turn_regenerate, _("There is no reply to regenerate.")
        )

    async def on_edit(self, payload: dict[str, Any]) -> None:
        text = payload.get("text")
        message = await self._own_message(payload.get("message"), role=Message.Role.USER)
        if message is None:
            await self.send(text_data=frames.error(_("That message was not found.")))
            return
        conversation = await database_sync_to_async(lambda: message.conversation)()
        await self._watch(conversation)
        try:
            turn = await database_sync_to_async(services.turn_edit)(
                user=self.scope["user"],
                message=message,
                text=text,
                client_id=_str(payload.get("client_id")),
            )
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message))
            return
        await generation.launch(turn)

    async def _follow_up(
        self, payload: dict[str, Any], start: Callable[..., services.Turn], missing: str
    ) -> None:
        """Retry or Continue: a new request for an existing reply of the user's."""
        reply = await self._reply(payload.get("reply"))
        if reply is None:
            await self.send(text_data=frames.error(missing))
            return
        conversation = await database_sync_to_async(lambda: reply.conversation)()
        await self._watch(conversation)
        try:
            turn = await database_sync_to_async(start)(user=self.scope["user"], reply=reply)
        except services.TurnRefused as refused:
            await self.send(text_data=frames.error(refused.message))
            return
        await generation.launch(turn)

    # --- helpers --------------------------------------------------------------------------
    @database_sync_to_async
    def _still_active(self) -> bool:
        """A socket whose account was suspended or deleted, whose session signed out, or whose
        password changed since it connected, is refused its next message: the same checks
        Django's auth makes on every page request."""
        user = get_user_model().objects.filter(pk=self.scope["user"].pk, is_active=True).first()
        session = self.scope.get("session")
        if user is None or session is None or not session.session_key:
            return False
        if not session.exists(session.session_key):
            return False  # signed out (the session row is gone)
        return constant_time_compare(
            session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
        )

    async def _conversation(self, conversation_id: object) -> Conversation | None:
        try:
            return await database_sync_to_async(get_conversation_for_user)(
                self.scope["user"], conversation_id
            )
        except Http404:
            return None

    async def _reply(self, reply_id: object) -> Message | None:
        """The reply with this id, if the user owns its conversation."""
        return await self._own_message(reply_id, role=Message.Role.ASSISTANT)

    @database_sync_to_async
    def _own_message(self, message_id: object, *, role: str) -> Message | None:
        """The message with this id and role, if the user owns its conversation."""
        try:
            key = int(str(message_id))
        except ValueError:
            return None
        return Message.objects.filter(
            pk=key, role=role, conversation__owner=self.scope["user"]
        ).first()

    async def _watch(self, conversation: Conversation) -> None:
        group = hub.group_name(conversation.pk)
        if group == self.group:
            return
        await self._leave()
        self.group = group
        hub.subscribe(group, self)
        if settings.CHANNEL_LAYER_SHARED:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _leave(self) -> None:
        if self.group is None:
            return
        hub.unsubscribe(self.group, self)
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


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _readable(payload: object) -> bool:
    """No string in the message, keys included, holds a NUL or half a surrogate pair
    (JSON's \\u escapes allow both): neither is text a person typed, UTF-8 cannot carry a
    lone surrogate and PostgreSQL refuses NUL. Iterative: the nesting may be deep."""
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value or _SURROGATE.search(value):
                return False
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return True


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _language(scope: dict[str, Any]) -> str:
    """The page's language, as LocaleMiddleware chooses it for pages: the user's choice
    (the language cookie), else the browser's Accept-Language, else the default."""
    from django.utils.translation.trans_real import parse_accept_lang_header

    candidates = [scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")]
    headers = dict(scope.get("headers", []))
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates += [code for code, _quality in parse_accept_lang_header(accept)]
    for code in candidates:
        if code and code != "*":
            try:
                return translation.get_supported_language_variant(code)
            except LookupError:
                continue
    return settings.LANGUAGE_CODE
