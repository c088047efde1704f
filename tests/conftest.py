pytest_plugins = ["tests.clickhouse_fixture", "tests.prometheus_server"]
