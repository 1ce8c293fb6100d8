"""`demo.report`: a multi-step report over a local article set (fetch, screen, summarise, write).

It stands in for a real research pipeline (search a literature database, filter the hits with
a model, write a digest) without any network access, so demos and tests can run anywhere.
Params: `query` (words to look for, default "microbiome"), `since` (ISO date, optional),
`max_articles` (default 5), `step_seconds` (pause per step to make progress visible, default 0.5).
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from app.errors import PermanentError
from app.pipelines import params
from app.pipelines.context import RunContext
from app.pipelines.registry import pipeline

Article = dict[str, Any]


@cache
def _articles() -> tuple[Article, ...]:
    raw = resources.files("app.pipelines").joinpath("data/articles.json").read_text("utf-8")
    return tuple(json.loads(raw)["articles"])


def fetch(since: date | None) -> list[Article]:
    return [a for a in _articles() if since is None or date.fromisoformat(a["published"]) >= since]


def score(article: Article, words: set[str]) -> int:
    """Relevance: how many query words the title, abstract and keywords mention."""
    haystack = " ".join([article["title"], article["abstract"], *article["keywords"]]).lower()
    return sum(1 for word in words if word in haystack)


def summarise(article: Article) -> str:
    first_sentence = article["abstract"].split(". ")[0].rstrip(".")
    return (
        f"**{article['title']}** ({article['source']}, {article['published']}): {first_sentence}."
    )


def write(query: str, picked: list[Article]) -> str:
    lines = [f"# Research digest: {query}", ""]
    lines += [f"- {summarise(article)}" for article in picked] or ["No matching articles."]
    return "\n".join(lines)


def _since(ctx: RunContext) -> date | None:
    raw = ctx.params.get("since")
    if raw is None:
        return None
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise PermanentError(f"params.since must be an ISO date, got {raw!r}") from None


@pipeline("demo.report")
def report(ctx: RunContext) -> dict[str, Any]:
    query = params.text(ctx.params, "query", "microbiome")
    limit = params.integer(ctx.params, "max_articles", 5, minimum=1)
    pause = params.number(ctx.params, "step_seconds", 0.5)
    words = {word.lower() for word in query.split()} or {""}

    ctx.progress(5, "fetching articles")
    found = fetch(_since(ctx))
    ctx.sleep(pause)
    ctx.progress(35, f"screening {len(found)} articles")
    relevant = sorted(
        (a for a in found if score(a, words) > 0), key=lambda a: (-score(a, words), a["id"])
    )
    ctx.sleep(pause)
    ctx.progress(70, f"summarising {min(limit, len(relevant))} of {len(relevant)} relevant")
    picked = relevant[:limit]
    ctx.sleep(pause)
    ctx.progress(95, "writing report")
    return {
        "query": query,
        "fetched": len(found),
        "relevant": len(relevant),
        "articles": [a["id"] for a in picked],
        "report": write(query, picked),
    }
