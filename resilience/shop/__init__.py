"""The reference shop: three small services (gateway, orders, catalog) whose failure modes
are known, so the toolkit's detectors can be held to ground truth.

Run one service with ``python -m resilience.shop SERVICE``, configured only by ``SHOP_*``
environment variables (see ``resilience.shop.settings`` and docs/shop.md). Importing this
package is cheap: the web framework, the database driver and OpenTelemetry load only when
an app is built.
"""

from __future__ import annotations

from resilience.shop.settings import (
    MODE_DEFAULTS,
    OPTION_NAMES,
    ShopOptions,
    ShopSettings,
    option_env_name,
    options_for,
    settings_from_env,
)

__all__ = [
    "MODE_DEFAULTS",
    "OPTION_NAMES",
    "ShopOptions",
    "ShopSettings",
    "option_env_name",
    "options_for",
    "settings_from_env",
]
