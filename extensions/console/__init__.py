"""The web console: pages, a JSON API under /api/v1 and the query layer the ``report``
commands share; reads only the public ClickHouse views."""

from collector.component import Factory
from extensions.console.config import ConsoleConfig


def _create(name: str, config: ConsoleConfig):  # type: ignore[no-untyped-def]
    from extensions.console.component import ConsoleExtension

    return ConsoleExtension(name, config)


FACTORY = Factory("console", "extension", ConsoleConfig, _create)
