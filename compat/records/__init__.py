"""Golden records for CI: ``record`` writes them (a zip of JSON and .npy, no pickle), ``replay`` verifies
them in today's environment, ``matrix`` in throwaway virtualenvs, ``pytest_plugin`` turns them into test
items. A record is data: ``model_class`` decides which class a replay may construct (never one a record
names, without trust)."""
