"""One cluster stack per test module: starting it (3 NATS nodes, 2 LiveKit nodes, Redis,
PostgreSQL and ten service processes) takes most of a minute on 2 cores."""

from collections.abc import Iterator

import pytest

from core_voice_cli.cluster import ClusterStack
from tests.harness.cluster import running_cluster
from tests.harness.nats import assert_no_permission_violations
from tests.harness.route_proxy import RouteProxies


@pytest.fixture(scope="module")
def route_proxies() -> Iterator[RouteProxies]:
    proxies = RouteProxies()
    try:
        yield proxies
    finally:
        proxies.close()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, route_proxies: RouteProxies
) -> Iterator[ClusterStack]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), route_proxies) as stack:
        yield stack
    assert_no_permission_violations(stack.log_dir)
