/* The chat page's own behaviour. Everything else is htmx and its websocket extension:
 * the composer form is sent over the socket (ws-send) and every frame the server sends
 * is an out-of-band swap. This file adds what htmx does not: Enter to send, a client id
 * per message (so a resend is recognised), the address bar following the conversation,
 * re-subscribing and resuming streams after a reconnect, and keeping the newest text in
 * view. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function chatState() {
    return document.getElementById("chat-state");
  }

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function messagesNearBottom() {
    var el = document.getElementById("messages");
    return !el || el.scrollHeight - el.scrollTop - el.clientHeight < 120;
  }

  function scrollToBottom() {
    var el = document.getElementById("messages");
    if (el) el.scrollTop = el.scrollHeight;
  }

  // Enter sends; Shift+Enter (and Enter while composing CJK text) makes a new line. On a
  // touch screen Enter is the keyboard's new-line key and the Send button sends.
  var touchScreen = window.matchMedia("(hover: none) and (pointer: coarse)");
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target || target.id !== "message-input") return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touchScreen.matches) {
      event.preventDefault();
      // While a reply is written here the button is Stop: Enter waits, the text stays.
      if (target.value.trim() && !replyStop()) target.form.requestSubmit();
    }
  });

  // The message box grows with its text up to ten lines, then scrolls. It is sized by its
  // `rows` (the Content Security Policy allows no inline style, and htmx would copy one
  // onto the box the server puts back after a refusal).
  var MAX_ROWS = 10;
  function fitComposer() {
    var input = document.getElementById("message-input");
    if (!input) return;
    var css = getComputedStyle(input);
    var line = parseFloat(css.lineHeight) || 24;
    var padding = parseFloat(css.paddingTop) + parseFloat(css.paddingBottom);
    // Measuring at one row briefly gives the messages more room, which can move their
    // scroll position: it is put back, so the conversation does not jump as one types.
    var list = document.getElementById("messages");
    var listTop = list ? list.scrollTop : 0;
    var scrolled = input.scrollTop;
    input.rows = 1;
    var rows = Math.ceil((input.scrollHeight - padding) / line - 0.05);
    input.rows = Math.max(1, Math.min(MAX_ROWS, rows));
    input.scrollTop = scrolled;
    if (list) list.scrollTop = listTop;
  }
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "message-input") fitComposer();
  });
  window.addEventListener("resize", fitComposer);

  // Send becomes Stop while a reply is written here (chat.css: the reply's own Stop form
  // is on the page). Stop presses that form and leaves the focus in the message box.
  function replyStop() {
    var stops = document.querySelectorAll("#messages .message .stop");
    return stops.length ? stops[stops.length - 1] : null;
  }
  function stopReply(focusBox) {
    var stop = replyStop();
    if (!stop) return false;
    stop.click();
    var input = document.getElementById("message-input");
    if (focusBox && input) input.focus();
    return true;
  }
  document.addEventListener("mousedown", function (event) {
    // Pressing the round Stop button does not take the focus out of the box.
    if (event.target.closest && event.target.closest(".composer-stop")) event.preventDefault();
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest(".composer-stop")) stopReply(true);
  });

  // A suggested prompt in an empty chat goes into the box, ready to send.
  document.addEventListener("click", function (event) {
    var suggestion = event.target.closest && event.target.closest(".suggestion");
    var input = document.getElementById("message-input");
    if (!suggestion || !input) return;
    input.value = suggestion.dataset.prompt;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    fitComposer();
    updateEstimate();
  });

  // The empty chat describes the model picked in the composer.
  function showPickedModel() {
    var select = document.getElementById("model-select");
    if (!select) return;
    document.querySelectorAll("#empty-chat .empty-model").forEach(function (el) {
      el.hidden = el.dataset.model !== select.value;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "model-select") showPickedModel();
  });

  // Notices ("Settings saved.") can be dismissed; a success goes away by itself.
  var FLASH_SECONDS = 5;
  function dismissFlash(flash) {
    var stack = flash.parentElement;
    var hadFocus = flash.contains(document.activeElement);
    flash.remove();
    if (stack && !stack.children.length) stack.remove();
    var input = document.getElementById("message-input");
    if (hadFocus && input) input.focus(); // the focus is not lost with the notice
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".flash-dismiss");
    if (button) dismissFlash(button.closest(".flash"));
  });
  function autohide(flash, seconds) {
    setTimeout(function () {
      // Not while someone is pointing at it or has the focus on it.
      if (flash.matches(":hover, :focus-within")) autohide(flash, 2);
      else dismissFlash(flash);
    }, seconds * 1000);
  }
  function scheduleFlashes() {
    document.querySelectorAll(".flash[data-autohide]").forEach(function (flash) {
      autohide(flash, FLASH_SECONDS);
    });
  }

  // Just before the composer goes over the socket: say which conversation it belongs to,
  // give it an id, and empty the box (the server puts the text back if it refuses it).
  document.addEventListener("htmx:wsConfigSend", function (event) {
    var params = event.detail.parameters;
    if (params.type === "edit") {
      // An edited message is a new message: it gets its own id, and the editor closes.
      params.client_id = newClientId();
      var details = event.detail.elt.closest("details");
      if (details) details.open = false;
      return;
    }
    if (params.type !== "send") return;
    var state = chatState();
    params.conversation = state ? state.dataset.conversation : "";
    params.client_id = newClientId();
    var input = document.getElementById("message-input");
    if (input) input.value = "";
    fitComposer();
  });

  // Replies being written arrive in numbered batches, formatted on the server: each one
  // appends the blocks it finished, replaces the block being written and appends to an
  // open code block, a large open table or a large open block's text tail
  // (conversations/streaming_render.py), so each applies on top of the
  // one before. The page knows the last batch it has of each reply (data-seq: its
  // checkpoint's number, then each batch's as it is applied); a batch it already has is
  // dropped, and a gap asks the server for the missing ones, so a reload, a reconnect or
  // a lost frame never leaves a hole or a repeat in the text.
  //
  // The ids of a reply's elements and the start of a batch frame are the server's
  // (conversations/dom.py), given by the page in #dom-patterns: "{id}" stands for a
  // message's number, "{seq}" for a batch's. Read back by one rule on both sides
  // (dom.py's parser): the pattern's text as it is, each placeholder a number.
  var PATTERNS = (function () {
    var el = document.getElementById("dom-patterns");
    return el ? JSON.parse(el.textContent) : null;
  })();

  // A pattern as a regular expression matching it filled in, from the start (to the end
  // if `whole`): "{id}" and "{seq}" are numbers in groups of those names.
  function patternParser(pattern, whole) {
    var source = "";
    var seen = {};
    pattern.split(/\{(id|seq)\}/).forEach(function (piece, n) {
      if (n % 2 === 0) {
        source += piece.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      } else if (seen[piece]) {
        source += "\\k<" + piece + ">";
      } else {
        source += "(?<" + piece + ">\\d+)";
        seen[piece] = true;
      }
    });
    return new RegExp("^" + source + (whole ? "$" : ""));
  }

  function elementId(part, id) {
    return PATTERNS[part].split("{id}").join(id);
  }

  var BATCH = PATTERNS && patternParser(PATTERNS.batch);
  var TEXT_ID = PATTERNS && patternParser(PATTERNS.text, true);
  var resumeAsked = {};

  function lastSeq(container) {
    return Number(container.dataset.seq || 0);
  }

  function streamingReplies() {
    var found = {};
    if (!TEXT_ID) return found;
    document.querySelectorAll(".stream-text[id]").forEach(function (el) {
      var match = TEXT_ID.exec(el.id);
      if (match) found[match.groups.id] = lastSeq(el);
    });
    return found;
  }

  function askResume(socket, replyId, after) {
    var now = Date.now();
    if (resumeAsked[replyId] && now - resumeAsked[replyId] < 1000) return;
    resumeAsked[replyId] = now;
    socket.send(JSON.stringify({ type: "resume", reply: replyId, after: after }));
  }

  // After every (re)connect, watch the conversation on screen again, from where it was.
  // 4003: this sign-in ended (signed out elsewhere, password changed, account suspended).
  // The socket will not come back; reloading shows the sign-in page.
  document.addEventListener("htmx:wsClose", function (event) {
    var close = event.detail && event.detail.event;
    if (close && close.code === 4003) window.location.reload();
  });

  document.addEventListener("htmx:wsOpen", function (event) {
    var state = chatState();
    resumeAsked = {};
    if (state && state.dataset.conversation) {
      event.detail.socketWrapper.send(
        JSON.stringify({
          type: "subscribe",
          conversation: state.dataset.conversation,
          resume: streamingReplies(),
        })
      );
    }
  });

  // A large table being written gains rows (streaming_render.py): they come in a
  // <template>, as a <tr> parses only inside a table or a template. htmx swaps in the
  // children of the element it is given; a template's are in its content: moved there.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fragment = event.detail.fragment;
    if (fragment && fragment.tagName === "TEMPLATE" && fragment.hasAttribute("data-rows")) {
      fragment.appendChild(fragment.content);
    }
  });

  var stickToBottom = true;
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    stickToBottom = messagesNearBottom();
    var match = BATCH && BATCH.exec(event.detail.message);
    if (!match) return;
    var replyId = match.groups.id;
    var container = document.getElementById(elementId("text", replyId));
    var seq = Number(match.groups.seq);
    if (!container) {
      event.preventDefault(); // the reply has ended here already
      return;
    }
    var last = lastSeq(container);
    if (seq <= last) {
      event.preventDefault();
    } else if (seq > last + 1) {
      event.preventDefault();
      askResume(event.detail.socketWrapper, replyId, last);
    } else {
      container.dataset.seq = seq; // htmx applies the batch right after this handler
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function (event) {
    // The server may have put a refused message back in the box.
    if (event.detail.message.indexOf('id="message-input"') !== -1) fitComposer();
    var state = chatState();
    if (state && state.dataset.url && window.location.pathname !== state.dataset.url) {
      // A new chat got its first message: the address bar follows the conversation.
      window.history.pushState({ conversation: state.dataset.conversation }, "", state.dataset.url);
      document.title = state.dataset.title;
    }
    if (stickToBottom) scrollToBottom();
  });

  // Escape stops the reply being written; Ctrl+Shift+O opens a new chat.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      if (stopReply(false)) event.preventDefault(); // the focus stays where it is
    } else if (event.key.toLowerCase() === "o" && event.shiftKey && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      window.location.href = document.querySelector(".new-chat").getAttribute("href");
    }
  });

  // Copy: each reply, and each code block (buttons added here: model output never
  // carries markup of its own).
  // Words the page gives this script in its own language.
  function words(key, fallback) {
    var main = document.querySelector("main.chat");
    return (main && main.dataset[key]) || fallback;
  }

  function copyText(text, button) {
    function done() {
      // Keep the first label: a second click within the pause must not make "Copied" stick.
      // Only the words change: an icon beside them stays.
      var place = button.querySelector(".button-label") || button;
      var label = button.dataset.label || (button.dataset.label = place.textContent);
      place.textContent = words("copied", "Copied");
      clearTimeout(button._copiedTimer);
      button._copiedTimer = setTimeout(function () { place.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
      done();
    }
  }
  function addCodeButtons(root) {
    (root || document).querySelectorAll(".codeblock-bar").forEach(function (bar) {
      if (bar.querySelector(".copy-code")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = words("copyCode", "Copy code");
      bar.appendChild(button);
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest(".copy-reply, .copy-code");
    if (!button) return;
    if (button.classList.contains("copy-code")) {
      copyText(button.closest(".codeblock").querySelector("pre").innerText, button);
      return;
    }
    var reply = document.querySelector(button.dataset.copyTarget);
    if (!reply) return;
    // The reply's text without the code blocks' bars (their language and buttons).
    var copy = reply.cloneNode(true);
    copy.querySelectorAll(".codeblock-bar").forEach(function (bar) { bar.remove(); });
    copyText(copy.textContent.trim(), button);
  });
  document.addEventListener("htmx:wsAfterMessage", function () { addCodeButtons(); });
  document.addEventListener("htmx:afterSwap", function () { addCodeButtons(); });

  // Long conversations open at their newest messages; older ones load when the reader
  // scrolls up to them, and the view stays where it was.
  var olderLink = null;
  var olderHeight = 0;
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.classList.contains("load-older")) {
      olderLink = event.detail.elt;
      olderHeight = document.getElementById("messages").scrollHeight;
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    // The link has been replaced by the older messages (and the next link, if any).
    if (olderLink && !document.body.contains(olderLink)) {
      var list = document.getElementById("messages");
      list.scrollTop += list.scrollHeight - olderHeight;
      olderLink = null;
      olderHeight = 0;
    }
  });
  document.addEventListener("htmx:responseError", function () {
    olderLink = null;
    olderHeight = 0;
  });
  function loadOlderIfNear() {
    var list = document.getElementById("messages");
    var link = list && list.querySelector(".load-older");
    if (link && !olderLink && list.scrollTop < 300 && window.htmx) htmx.trigger(link, "click");
  }

  // The page's content belongs to one address: going back or forward loads that page.
  window.addEventListener("popstate", function () {
    window.location.reload();
  });

  // Before sending: the most the next message can cost, as the server reserves it
  // (billing/meter.py reserve): the model the picker shows, at its per-1k prices, for the
  // input (the history as the server counts it, given by the page, plus what is typed,
  // estimated as the server does: a token per three UTF-8 bytes, or per word and mark if
  // more, and 4 of framing) and the conversation's longest reply (its setting, within the
  // model's maximum); never more than the budget left today, which the spend meter gives.
  function moneyFormat() {
    var el = document.getElementById("cost-estimate");
    var d = el ? el.dataset : {};
    return {
      pattern: d.moneyPattern || "${amount}",
      decimal: d.moneyDecimal || ".",
      thousands: d.moneyThousands || ",",
    };
  }
  function formatUsd(micros) {
    // One rule with the server (billing/meter.py, format_usd): the exact micro-dollars,
    // trailing zeros trimmed, never fewer than two decimals, in the page's language.
    var f = moneyFormat();
    var abs = Math.abs(micros);
    var digits = String(abs % 1000000).padStart(6, "0").replace(/0+$/, "");
    while (digits.length < 2) digits += "0";
    var whole = String(Math.floor(abs / 1000000)).replace(/\B(?=(\d{3})+(?!\d))/g, f.thousands);
    return (micros < 0 ? "-" : "") + f.pattern.replace("{amount}", whole + f.decimal + digits);
  }
  function estimateTokens(text) {
    var bytes = new TextEncoder().encode(text).length;
    var pieces = (text.match(/[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]/gu) || []).length;
    return Math.max(Math.ceil(bytes / 3), pieces);
  }
  function costMicros(inputTokens, outputTokens, model) {
    // billing/meter.py cost_micros: whole micro-dollars, rounded up.
    return Math.ceil((inputTokens * model.in + outputTokens * model.out) / 1000);
  }
  function budgetLeft() {
    var meter = document.getElementById("spend-meter");
    if (!meter || meter.dataset.left === undefined) {
      return { left: Infinity, paused: false, text: "", short: "" };
    }
    return {
      left: Number(meter.dataset.left),
      paused: meter.dataset.paused === "true",
      text: meter.dataset.pausedText || "",
      short: meter.dataset.shortText || "",
    };
  }
  function updateEstimate() {
    var el = document.getElementById("cost-estimate");
    var input = document.getElementById("message-input");
    var select = document.getElementById("model-select");
    if (!el || !input) return;
    var d = el.dataset;
    var models = JSON.parse(d.models || "{}");
    var model = select ? models[select.value] : null;
    el.classList.remove("cost-estimate--paused");
    if (!model) {
      el.textContent = "";
      return;
    }
    if (!model.in && !model.out) {
      el.textContent = d.labelFree;
      return;
    }
    var longest = Math.max(1, Math.min(Number(d.maxOutputSetting) || model.max, model.max));
    var typed = input.value ? estimateTokens(input.value) + 4 : 0;
    // The server sends the history that fits in the window beside the longest reply.
    var history = document.getElementById("estimate-history");
    var historyTokens = history ? Number(history.value) : 0;
    var inputTokens = Math.min(historyTokens + typed, Math.max(0, model.window - longest));
    var micros = costMicros(inputTokens, longest, model);
    var budget = budgetLeft();
    var least = costMicros(inputTokens, Math.min(Number(d.minUseful) || longest, longest), model);
    if (budget.paused) {
      // The meter refused one, or a budget is spent: sending (paid) waits for the reset.
      el.textContent = budget.text;
      el.classList.add("cost-estimate--paused");
    } else if (least > budget.left) {
      // Not enough left: held by replies still being written (it comes back when they
      // finish), or the meter will refuse it. Sending is not blocked: the server decides.
      el.textContent = budget.short;
      el.classList.add("cost-estimate--paused");
    } else if (micros > budget.left) {
      el.textContent = d.labelCapped.replace("{cost}", formatUsd(budget.left));
    } else {
      el.textContent = d.label.replace("{cost}", formatUsd(micros));
    }
  }
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "model-select") updateEstimate();
  });
  // Once the meter has refused a message for want of budget (or a budget is spent to its
  // cap; money merely held by a reply being written does not count), sending with a paid
  // model waits for the reset: the send is not made (the hint says why) and the text stays in
  // the box. Captured before the handler that empties the box; a free model still sends.
  function sendingPaused() {
    var meter = document.getElementById("spend-meter");
    var el = document.getElementById("cost-estimate");
    var select = document.getElementById("model-select");
    if (!meter || !el || !select || meter.dataset.paused !== "true") return false;
    var model = JSON.parse(el.dataset.models || "{}")[select.value];
    var resets = Date.parse(meter.dataset.resetsAt || "");
    return Boolean(model && (model.in || model.out)) && !(Date.now() >= resets);
  }
  document.addEventListener(
    "htmx:wsConfigSend",
    function (event) {
      if (event.detail.parameters.type !== "send" || !sendingPaused()) return;
      event.preventDefault();
      event.stopPropagation();
      var submit = event.detail.triggeringEvent;
      if (submit) submit.preventDefault(); // no plain form submission either
      updateEstimate();
      var input = document.getElementById("message-input");
      if (input) input.focus();
    },
    true
  );
  // After each turn the server sends the spend meter and the history anew.
  document.addEventListener("htmx:wsAfterMessage", updateEstimate);
  document.addEventListener("htmx:afterSettle", updateEstimate);
  // A language picked in the list applies at once (the button is for pages without JS).
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "language-select") event.target.form.submit();
  });

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "message-input") updateEstimate();
  });

  document.addEventListener("DOMContentLoaded", function () {
    fitComposer();
    showPickedModel();
    scheduleFlashes();
    updateEstimate();
    addCodeButtons();
    scrollToBottom();
    var list = document.getElementById("messages");
    if (list) list.addEventListener("scroll", loadOlderIfNear, { passive: true });
    var input = document.getElementById("message-input");
    if (input) input.focus();
  });
})();

/* === Layout (Step 10): the conversation drawer on phones, the Conversation menu and its
 * dialogs. Without JavaScript the drawer's link goes to the list page, the menu is a plain
 * <details>, and its Rename and Settings links reload the page with their dialog open. */
(function () {
  "use strict";

  var FOCUSABLE =
    'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), ' +
    "select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

  function drawerParts() {
    return {
      sidebar: document.getElementById("sidebar"),
      toggle: document.querySelector(".drawer-toggle"),
      backdrop: document.querySelector(".drawer-backdrop"),
      main: document.querySelector("main.chat"),
    };
  }

  function drawerOpen() {
    var parts = drawerParts();
    return !!(parts.sidebar && parts.sidebar.classList.contains("open"));
  }

  function visibleFocusables(root) {
    return Array.prototype.filter.call(root.querySelectorAll(FOCUSABLE), function (el) {
      return el.offsetParent !== null || el === document.activeElement;
    });
  }

  function openDrawer() {
    var parts = drawerParts();
    if (!parts.sidebar) return;
    parts.sidebar.classList.add("open");
    parts.backdrop.hidden = false;
    parts.toggle.setAttribute("aria-expanded", "true");
    // What is behind the drawer cannot be reached while it is open.
    parts.main.inert = true;
    document.body.classList.add("drawer-is-open");
    var current = parts.sidebar.querySelector("[aria-current='page']");
    var first = current || parts.sidebar.querySelector(".new-chat");
    if (first) first.focus();
  }

  function closeDrawer(returnFocus) {
    var parts = drawerParts();
    if (!parts.sidebar || !drawerOpen()) return;
    parts.sidebar.classList.remove("open");
    parts.backdrop.hidden = true;
    parts.toggle.setAttribute("aria-expanded", "false");
    parts.main.inert = false;
    document.body.classList.remove("drawer-is-open");
    if (returnFocus) parts.toggle.focus();
  }

  var MENUS = "details.conversation-menu, details.item-menu";

  function closeMenus(except) {
    document.querySelectorAll("details.conversation-menu[open], details.item-menu[open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.closest(".drawer-toggle")) {
      if (drawerOpen()) closeDrawer(true);
      else openDrawer();
      return;
    }
    if (target.closest(".drawer-close") || target.closest(".drawer-backdrop")) {
      closeDrawer(true);
      return;
    }
    var opener = target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.dialog);
      if (dialog && dialog.showModal) {
        event.preventDefault();
        closeMenus(null);
        dialog.showModal();
        var field = dialog.querySelector("input:not([type=hidden]), textarea");
        if (field) field.focus();
        return;
      }
    }
    // A click outside an open menu, or on a download in it, closes it; one menu at a time.
    var inMenu = target.closest(MENUS);
    if (!inMenu || target.closest("a[download]")) closeMenus(null);
    else closeMenus(inMenu);
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      // A modal dialog closes itself on Escape; nothing else on the page acts on it.
      if (document.querySelector("dialog[open]:modal")) {
        event.stopImmediatePropagation();
        return;
      }
      var openMenu = document.querySelector("details.item-menu[open]") ||
        document.querySelector("details.conversation-menu[open]");
      if (openMenu) {
        event.preventDefault();
        event.stopImmediatePropagation();
        openMenu.open = false;
        openMenu.querySelector("summary").focus();
        return;
      }
      if (drawerOpen()) {
        event.preventDefault();
        event.stopImmediatePropagation();
        closeDrawer(true);
      }
      return;
    }
    // Focus stays inside the open drawer: Tab past its last control comes back to its first.
    if (event.key === "Tab" && drawerOpen()) {
      var sidebar = drawerParts().sidebar;
      var items = visibleFocusables(sidebar);
      if (!items.length) return;
      var first = items[0];
      var last = items[items.length - 1];
      var inside = sidebar.contains(document.activeElement);
      if (event.shiftKey && (document.activeElement === first || !inside)) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
        event.preventDefault();
        first.focus();
      }
    }
  }, true);

  // Wider than a phone, the sidebar is not a drawer: nothing stays inert.
  var phone = window.matchMedia("(max-width: 720px)");
  function onResize() {
    if (!phone.matches) closeDrawer(false);
  }
  if (phone.addEventListener) phone.addEventListener("change", onResize);

  // A dialog the server opened (a link without JavaScript, or settings with errors) is
  // shown as a modal, like one opened from the menu.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("dialog[data-show-modal][open]").forEach(function (dialog) {
      if (!dialog.showModal) return;
      dialog.close();
      dialog.showModal();
    });
  });
})();
