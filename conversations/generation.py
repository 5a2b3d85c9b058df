"""Generations: the task that streams one reply to everyone watching.

A generation is an asyncio task of its own, not tied to the socket that asked for it: a
closed tab or a dropped connection does not end it. It runs the turn's metered call
(billing.calls: a slot, attempts, retries, timeouts, one settlement), hands the text to the
batcher (batcher.py), tells the page what the call is doing (queued, retrying, still
thinking), and ends the turn exactly once (endings.turn_finish, in the settlement's
transaction).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils.translation import gettext as _

from billing.calls import Call, Ending, Listener, Priority
from billing.errors import admin_detail

from . import fanout, figures, frames, sockets
from .batcher import Batcher, writer
from .endings import turn_finish
from .models import Message
from .rendering import render_markdown
from .turns import Turn, TurnKind

log = logging.getLogger(__name__)
STOP_REASON_CHARS = Message._meta.get_field("stop_reason").max_length

_running: dict[int, Generation] = {}


class Generation(Listener):
    """One reply being written: its call, its batches, its end."""

    def __init__(self, turn: Turn, group: str) -> None:
        assert turn.request is not None and turn.model is not None
        self.reply_id = turn.reply.pk
        self.group = group
        self.call = Call(
            reservation_id=turn.reply.reservation_id,
            payer=f"user:{turn.conversation.owner_id}",
            spec=turn.model.spec,
            request=turn.request,
            input_estimate=turn.input_estimate,
            priority=Priority.INTERACTIVE,
            listener=self,
        )
        self.feed = fanout.ReplyFeed(group, self.reply_id)
        prefix = turn.reply.content if turn.kind == TurnKind.CONTINUE else ""
        self.batcher = Batcher(self.reply_id, self.feed, prefix=prefix)
        self.task: asyncio.Task[None] | None = None
        self.stop_requested = False
        self._background: set[asyncio.Future[None]] = set()

    async def run(self) -> None:
        await self.batcher.start()
        await self.feed.open()
        interrupted = False
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self.call.run()
        except asyncio.CancelledError:
            # Stop, or the server shutting down: either way the turn still ends here.
            interrupted = not self.stop_requested
        finally:
            heartbeat.cancel()
        await self.batcher.drain()
        await self._end(self.call.ending(stopped=self.stop_requested, interrupted=interrupted))
        if interrupted:
            raise asyncio.CancelledError

    # --- what the call tells the page -------------------------------------------------------
    async def text(self, delta: str) -> None:
        await self.batcher.add(delta)

    async def accepted(self) -> None:
        await fanout.publish(self.group, frames.reply_status(self.reply_id))

    async def waiting(self, position: int) -> None:
        await fanout.publish(self.group, frames.reply_status(self.reply_id, queued=position))

    async def queued(self, ahead: int, seconds: float) -> None:
        wait = max(1, round(seconds))
        text = (
            _("Queued: %(ahead)s ahead of yours, starting in about %(wait)s s…")
            % {"ahead": ahead, "wait": wait}
            if ahead > 0
            else _("Waiting for the model… starting in about %(wait)s s.") % {"wait": wait}
        )
        await fanout.publish(self.group, frames.reply_status(self.reply_id, text=text))

    async def retrying(self, seconds: float) -> None:
        text = _("The model service is busy. Retrying in %(wait)s s…") % {
            "wait": max(1, round(seconds))
        }
        await fanout.publish(self.group, frames.reply_status(self.reply_id, text=text))

    def slow(self) -> None:
        frame = frames.reply_status(
            self.reply_id, text=_("Still thinking… the model is taking longer than usual.")
        )
        task = asyncio.ensure_future(fanout.publish(self.group, frame))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the end ----------------------------------------------------------------------------
    async def _end(self, ending: Ending) -> None:
        """End the turn once: its status, its text, its bill."""
        status, error, end = ending.outcome, ending.error, ending.end
        text = self.batcher.text
        # The one-shot render of the reply's own text, which the page's copy already shows
        # (streaming_render.py). Not the renderer's: a batch whose render Stop cut short is
        # in the text and must be in what is stored.
        html = await sync_to_async(render_markdown, thread_sensitive=False)(text) if text else ""
        # The upstream's word, kept within the column (an unknown, long reason is cut).
        stop_reason = (end.stop_reason if end else "")[:STOP_REASON_CHARS]
        if self.batcher.prefix and not self.batcher.parts and status != Message.Status.COMPLETE:
            # A Continue that added nothing (stopped, or failed before any new text): the
            # reply stays as it was, cut off, and can still go on.
            status, stop_reason = Message.Status.CUT_OFF, "max_tokens"

        def record(charged: int | None) -> Message:
            return turn_finish(
                reply_id=self.reply_id,
                status=status,
                content=text,
                content_html=html,
                charged=charged,
                last=ending.attempts[-1],
                stop_reason=stop_reason,
                error_detail=admin_detail(error) if error else "",
            )

        final, owner_id = await self.call.settle(ending, record, then=_shown_as_ended)
        await fanout.publish(self.group, final)
        # The person's other pages (other tabs, other conversations) show the new spend too.
        await sockets.spend_changed(owner_id, shown_in=self.group)
        await self.feed.close()

    async def _heartbeat(self) -> None:
        """Show recovery this turn is alive, even while no token arrives."""
        interval = max(1.0, settings.RECOVERY_STALE_SECONDS / 4)
        while True:
            await asyncio.sleep(interval)
            await writer().heartbeat(self.reply_id)

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop_requested = True
            self.task.cancel()


def _shown_as_ended(message: Message) -> tuple[str, int]:
    """The frame that shows the reply as it ended, and the spend after it; and who pays
    (the conversation's owner, whose every page is told the spend changed). Rendered with
    the database at hand: what the page offers next depends on it."""
    conversation = message.conversation
    frame = (
        frames.message_replaced(message)
        + frames.announce(message)
        + frames.figures(conversation, figures.spend_for(conversation.owner))
    )
    return frame, conversation.owner_id


async def launch(turn: Turn) -> Generation | None:
    """Announce a new turn to everyone watching and start its generation."""
    if not turn.created:
        return _running.get(turn.reply.pk)
    group = fanout.group_name(turn.conversation.pk)
    removed = turn.superseded
    if turn.kind == TurnKind.NEW:
        shown = frames.turn_started(turn.user_message, turn.reply, removed=removed)
    elif turn.kind == TurnKind.CONTINUE:
        shown = frames.turn_started(replaced=turn.reply)
    else:  # a Retry or Regenerate: a new reply to the same question
        shown = frames.turn_started(turn.reply, removed=removed)
    if turn.request is None:  # refused before any call (no budget): nothing to generate
        # The spend meter and the cost hint say sending is paused until the reset.
        conversation = turn.conversation
        paused = await database_sync_to_async(lambda: figures.spend_for(conversation.owner))()
        await fanout.publish(group, shown + frames.spend(paused))
        await sockets.spend_changed(turn.conversation.owner_id, shown_in=group)
        return None
    await fanout.publish(group, shown)
    generation = Generation(turn, group)
    generation.task = asyncio.create_task(generation.run(), name=f"reply-{turn.reply.pk}")
    _running[turn.reply.pk] = generation
    listener = (
        asyncio.create_task(_listen_for_stop(generation)) if settings.CHANNEL_LAYER_SHARED else None
    )

    def ended(_task: asyncio.Task[None]) -> None:
        if _running.get(turn.reply.pk) is generation:  # not a Continue that came after
            del _running[turn.reply.pk]
        if listener is not None:
            listener.cancel()

    generation.task.add_done_callback(ended)
    return generation


def _stop_group(reply_id: int) -> str:
    return f"stop-{reply_id}"


async def _listen_for_stop(generation: Generation) -> None:
    """With several processes, Stop may be pressed on a socket held by another one: it
    reaches this generation through the channel layer."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = _stop_group(generation.reply_id)
    await layer.group_add(group, channel)
    try:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "reply.stop":
                generation.stop()
                return
    finally:
        await layer.group_discard(group, channel)


async def stop(reply: Message) -> None:
    """Stop the generation of `reply` (selectors.get_message_for_user), in this process or
    another."""
    generation = _running.get(reply.pk)
    if generation is not None:
        generation.stop()
    elif settings.CHANNEL_LAYER_SHARED:
        await get_channel_layer().group_send(_stop_group(reply.pk), {"type": "reply.stop"})
