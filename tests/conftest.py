pytest_plugins = ["tests.support.clickhouse_fixture", "tests.support.prometheus_server"]
