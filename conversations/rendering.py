"""Markdown to safe HTML, on the server.

markdown-it-py parses with raw HTML turned off (HTML in the text shows as text), Pygments
highlights fenced code, and nh3 (ammonia) sanitises the result against an allowlist as a
second wall: no tag, attribute or URL scheme outside it reaches the page. Images are
rendered as links, so a reply cannot make the browser fetch an outside URL. Nothing
rendered carries an inline style (table alignment is a class), so the Content Security
Policy's `style-src 'self'` has nothing to refuse.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_core import StateCore, block, normalize
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True)
_ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "input", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "div": {"class"},
    "input": {"type", "checked", "disabled"},
    "li": {"class"},
    "ol": {"start"},
    "pre": {"class"},
    "span": {"class"},
    "td": {"class"},
    "th": {"class"},
    "ul": {"class"},
}
_ALLOWED_SCHEMES = {"http", "https", "mailto"}


def code_label(info: str) -> tuple[Any, str]:
    """The lexer (None when the language is unknown or missing) and the label shown on a
    fenced code block whose info string is `info`."""
    language = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    return lexer, escapeHtml(language) if lexer else "text"


def codeblock_html(label: str, code_html: str) -> str:
    """A code block as the page shows it: a bar with its language, then the code."""
    return (
        f'<div class="codeblock"><div class="codeblock-bar"><span class="codeblock-lang">'
        f'{label}</span></div><pre class="highlight"><code class="language-{label}">'
        f"{code_html}</code></pre></div>\n"
    )


@lru_cache(maxsize=32)
def _highlighted(info: str, content: str) -> str:
    """A code block's HTML. Kept: a block still open when the text around it is rendered
    again (a list item after a code block in an earlier one) is not highlighted again."""
    lexer, label = code_label(info)
    code = highlight(content, lexer, _FORMATTER) if lexer else escapeHtml(content)
    return codeblock_html(label, code)


def _fence(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    return _highlighted(token.info, token.content)


def _image(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escapeHtml(src)}">{escapeHtml(alt)}</a>'


def _alignment_classes(state: Any) -> None:
    """Table cells' alignment as a class (`align-left`, `align-center`, `align-right`,
    styled in chat.css) instead of the inline style markdown-it gives them."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            style = str(token.attrs.pop("style"))
            align = style.removeprefix("text-align:")
            if align in ("left", "center", "right"):
                token.attrSet("class", f"align-{align}")


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(tasklists_plugin)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    md.add_render_rule("image", _image)
    md.core.ruler.push("alignment_classes", _alignment_classes)
    return md


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to put in the page as it is."""
    return render_part(text, {})


def render_part(text: str, env: dict[str, Any]) -> str:
    """`render_markdown` of a part of a text: `env` carries what the parts before defined
    (their link reference definitions), and gets this part's."""
    return sanitise(_markdown().render(text, env))


def parse(text: str) -> list[Any]:
    """The block and inline tokens of `text`, as `render_markdown` parses it."""
    return _markdown().parse(text, {})  # type: ignore[no-any-return]


def parse_blocks(text: str) -> list[Any]:
    """The block tokens of `text` as `render_markdown` parses it, without the inline parse
    (the block structure only: a few times cheaper than `parse`)."""
    md = _markdown()
    state = StateCore(text, md, {})
    normalize(state)
    block(state)
    return state.tokens


def sanitise(html: str) -> str:
    """HTML kept to the allowlist: tags, attributes, URL schemes."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_ALLOWED_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        # Links go out with a full address only. A relative one would point into the app
        # itself (its pages and actions), where a reply has no business sending a reader,
        # and is how a mangled scheme ("jav%09ascript:") ends up: it is dropped.
        url_relative="deny",
        strip_comments=True,
    )
