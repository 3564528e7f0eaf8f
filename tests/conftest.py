"""Shared test settings: headless plotting, a hypothesis profile that fits CI's budget."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "dance",
    deadline=None,  # the machine is shared: timings are not behaviour
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI") == "true",  # CI reruns the same examples every time
)
settings.load_profile("dance")
