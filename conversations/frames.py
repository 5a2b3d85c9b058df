"""The HTML fragments sent over the websocket, each an htmx out-of-band swap.

Whole messages are rendered with the same template partial as the page, so what a socket
shows and what a reload shows cannot drift apart. Token batches are built by hand: they
are the hot path, and carry only what the streaming renderer made (sanitised HTML of the
blocks that changed, escaped code).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from billing import catalog
from billing.meter import Spend

from . import dom
from .models import Conversation, Message
from .streaming_render import Ops, StreamRenderer

PAGE = "conversations/chat.html"


def render_message(message: Message, *, oob: bool = False) -> str:
    return render_to_string(f"{PAGE}#message", {"message": message, "oob": oob})


def batch(reply_id: int, seq: int, ops: Ops) -> str:
    """Batch `seq` of a reply being written: finished blocks appended, the open block
    replaced, an open code block's new text appended, a large open table's rows or a large
    open block's tail appended (streaming_render.py). The first element always comes and
    carries the number (static/chat.js reads it there); the elements' starts are dom.py's."""
    frame = f"{dom.batch_start(reply_id, seq)}{ops.done}</div>"
    marks = dom.batch_markers(reply_id)
    if ops.open is not None:
        frame += f"{marks.open}{ops.open}</div>"
    if ops.code:
        frame += f"{marks.code}{ops.code}</div>"
    if ops.tail:
        frame += f"{marks.tail}{ops.tail}</div>"
    if ops.rows:
        # Table rows parse only inside a table or a template (in a <div> the browser drops
        # their tags): a template, whose rows static/chat.js hands to htmx to append.
        frame += f"{marks.rows}{ops.rows}</template>"
    return frame


def stream_parts(reply_id: int, shown: StreamRenderer) -> str:
    """The inside of a streaming reply's text: its finished blocks, then its open one."""
    return (
        f'<div id="{dom.element_id(reply_id, "done")}" class="stream-done">{shown.done_html}</div>'
        f'<div id="{dom.element_id(reply_id, "open")}" class="stream-open">{shown.open_html}</div>'
    )


def stream_reset(reply_id: int, seq: int, text: str) -> str:
    """The whole text so far of a reply being written, up to batch `seq`: for a page that
    fell too far behind for the missing batches to be sent one by one."""
    return (
        f'<div class="stream-text markdown" id="{dom.element_id(reply_id, "text")}" '
        f'data-seq="{seq}" dir="auto" '
        f'hx-swap-oob="true">{stream_parts(reply_id, StreamRenderer(text))}</div>'
    )


def reply_status(reply_id: int, *, queued: int | None = None, text: str = "") -> str:
    """What a reply without text yet is waiting for (`text` says it in other words):
    `queued` requests ahead of it, or none (the model is about to take it)."""
    if not text and queued is not None:
        text = (
            ngettext(
                "Queued: %(count)s request ahead of yours…",
                "Queued: %(count)s requests ahead of yours…",
                queued,
            )
            % {"count": queued}
            if queued > 0
            else _("Waiting for the model…")
        )
    text = text or _("Thinking…")
    status_id = dom.element_id(reply_id, "status")
    return f'<span id="{status_id}" class="thinking" hx-swap-oob="true">{escape(text)}</span>'


def turn_started(
    *appended: Message, replaced: Message | None = None, removed: Iterable[int] = ()
) -> str:
    """A turn began: its messages appended to the list (the user's and the empty reply, or
    a Retry's new reply), or a continued reply re-rendered in place, streaming again;
    messages it replaced (Regenerate, an edit) taken off the page."""
    frame = "".join(f'<div id="{dom.element_id(pk)}" hx-swap-oob="delete"></div>' for pk in removed)
    frame += (
        f'<div hx-swap-oob="beforeend:#messages">{"".join(map(render_message, appended))}</div>'
        if appended
        else ""
    )
    if replaced is not None:
        frame += render_message(replaced, oob=True)
    return frame + '<div id="chat-error" hx-swap-oob="true" class="chat-error" role="alert"></div>'


def message_replaced(message: Message) -> str:
    """A message re-rendered in place: a reply that finished, failed or stopped."""
    return render_message(message, oob=True)


def announce(message: Message) -> str:
    """Read a settled reply out once to screen readers (never token by token)."""
    return (
        '<div id="announcer" class="visually-hidden" aria-live="polite" hx-swap-oob="true">'
        f"{escape(message.announcement)}</div>"
    )


def conversation_opened(conversation: Conversation) -> str:
    """Tell the page which conversation it is now in (its address bar follows), and put
    the conversation at the top of the list's Today group."""
    return render_to_string(
        f"{PAGE}#conversation-opened",
        {
            "conversation": conversation,
            "model_name": catalog.display_name(conversation.model),
            "oob": True,
        },
    )


def model_switched(conversation: Conversation) -> str:
    """The header names the model that answers from now on."""
    return render_to_string(
        f"{PAGE}#model-name",
        {"model_name": catalog.display_name(conversation.model), "oob": True},
    )


def error(text: str, *, restore: str | None = None) -> str:
    """A problem with what the user sent; `restore` puts their text back in the box."""
    frame = (
        '<div id="chat-error" hx-swap-oob="true" class="chat-error" role="alert">'
        f"{escape(text)}</div>"
    )
    if restore is not None:
        frame += render_to_string(f"{PAGE}#composer-text", {"text": restore, "oob": True})
    return frame


def spend(today: Spend) -> str:
    """The user's spend meter (and, through it, the cost hint's budget left)."""
    return render_to_string(f"{PAGE}#spend-meter", {"spend": today, "oob": True})


def figures(conversation: Conversation, today: Spend) -> str:
    """After a turn: the spend meter, the context gauge and the cost hint's history, as a
    reload would show them (the page's figures live from the first reply on)."""
    from . import figures as page_figures  # figures reads models; frames is imported early

    estimate = {"history_tokens": page_figures.history_tokens(conversation)}
    gauge = page_figures.context_gauge(conversation)
    return (
        spend(today)
        + render_to_string(f"{PAGE}#context-gauge", {"gauge": gauge, "oob": True})
        + render_to_string(f"{PAGE}#estimate-history", {"estimate": estimate, "oob": True})
    )
