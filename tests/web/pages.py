"""Reading rendered pages in tests: links, list items and element ids, by a real HTML parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Item:
    """One `<li>` of a list: the card (its heading's id) it sits in and the links in it."""

    card: str | None
    links: list[str] = field(default_factory=list)
    link_texts: list[str] = field(default_factory=list)
    text: str = ""


class _Parser(HTMLParser):
    def __init__(self, list_classes: tuple[str, ...]) -> None:
        super().__init__()
        self.list_classes = list_classes
        self.ids: set[str] = set()
        self.items: list[Item] = []
        self.card: str | None = None
        self.depth_in_list: list[int] = []  # nesting of the lists we collect
        self.open_items: list[Item] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.in_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "section" and a.get("aria-labelledby"):
            self.card = a["aria-labelledby"]
        classes = a.get("class", "").split()
        if tag == "ul" and any(c in classes for c in self.list_classes):
            self.depth_in_list.append(0)
        elif self.depth_in_list and tag == "ul":
            self.depth_in_list[-1] += 1
        if tag == "li" and self.depth_in_list and self.depth_in_list[-1] == 0:
            item = Item(self.card)
            self.items.append(item)
            self.open_items.append(item)
        if tag == "a" and self.open_items:
            self.open_items[-1].links.append(a.get("href", ""))
            self.open_items[-1].link_texts.append("")
            self.in_link = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self.in_link = False
        if tag == "ul" and self.depth_in_list:
            if self.depth_in_list[-1] == 0:
                self.depth_in_list.pop()
            else:
                self.depth_in_list[-1] -= 1
        if tag == "li" and self.open_items and self.depth_in_list and self.depth_in_list[-1] == 0:
            self.open_items.pop()
        if tag == "section":
            self.card = None

    def handle_data(self, data: str) -> None:
        if self.open_items:
            self.open_items[-1].text += data
            if self.in_link:
                self.open_items[-1].link_texts[-1] += data


def list_items(html: str, *list_classes: str) -> list[Item]:
    """The items of every `<ul>` with one of these classes (not of lists nested in them)."""
    parser = _Parser(list_classes)
    parser.feed(html)
    return parser.items


def element_ids(html: str) -> set[str]:
    parser = _Parser(())
    parser.feed(html)
    return parser.ids


def start_tags(html: str) -> list[tuple[str, dict[str, str]]]:
    """Every start tag with its attributes, in document order."""
    parser = _Parser(())
    parser.feed(html)
    return parser.tags
