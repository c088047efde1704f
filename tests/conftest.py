pytest_plugins = ["tests.clickhouse_fixture"]
