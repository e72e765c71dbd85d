"""dbsync's settings with the list baseline of bench/minimal_list.py mounted beside the API."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.minimal_list"
