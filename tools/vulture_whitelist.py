"""Names vulture (make lint) reports as unused that are used, or kept on purpose.

Each entry says why. Add here only what is reached in a way vulture cannot see (a wire
field, a library hook, a seam another package is about to use); remove dead code instead.
"""

# ruff: noqa: B018, F821
# mypy: ignore-errors

# Wire fields: read by the other end of the protocol, not by Python code here.
_.components_failed  # gateway/control_protocol.py Health (status --json readers)
_.previous_run_failed  # gateway/control_protocol.py Health
_.contract_version  # hamlet/contract.py IngestLimits, served by the server
_.max_gaps_per_batch  # hamlet/contract.py IngestLimits
_.max_future_skew_ms  # hamlet/contract.py IngestLimits
_.created_ms  # server/registry.py row field
_.truncated  # server/models.py, server/store/sqlite_series.py: API answer field
_.first_day  # server/indicators/card.py report card field
_.untrusted_time_readings  # server/indicators/card.py report card field

# Library hooks: called by pymodbus, paho, openpyxl, uvicorn or pytest.
function_code  # firmware_sim/modbus_tx.py datastore callback signature
start_address
set_values
_.connect_timeout  # paho client attribute set for its own use
_.font  # openpyxl cell styling (server/indicators/render.py)
_.number_format
app_from_env  # uvicorn factory "server.app:app_from_env" (a string vulture cannot follow)
_argv  # tests/support/broker.py: overridden per broker kind

# Counters kept for a debugger and future status lines (write-only today; see issue 15).
_.garbage_bytes  # gateway/sources/serial/protocol.py
_.dropped_bytes  # firmware_sim/ptylink.py
_.written_bytes

# Shared seams whose first callers are being written on other branches (issue 11's alert
# engine: service hours, AWD field water); remove if still unused after that merge.
field_water_status  # hamlet/thresholds.py
_.UNKNOWN
_.station
month_days  # hamlet/vncalendar.py
_.is_open

# Left for later (the owning areas are being reworked on other branches; issue 15 item 7).
_.aggregates  # gateway/buffer/budget.py, store.py
_.as_dict  # gateway/buffer/store.py
_.enforce_budget  # gateway/buffer/store.py
_day_sql  # server/indicators/source.py
set_user_disabled  # server/registry.py
raw_json  # tests/server/helpers.py

# Response-model and wire fields (pydantic): serialised to API clients, not read in Python.
_.peak_time  # server/alerts/routes.py AlertOut
_.updated  # server/alerts/routes.py AlertOut
_.acked_by  # server/alerts/routes.py AlertOut
busy_seconds  # server/alerts/routes.py sync answer
_.sessions  # server/users_api.py UserOut: open sessions
_.stop_url  # server/notify/routes.py SubscriberOut
_.mr  # firmware_sim/gsm_modem.py SentPart: the reference the modem answered with
_.media_type  # starlette Response class attribute (server/errors.py)
_.row_factory  # sqlite3 connection attribute (server/notify/store.py)
# Audit actions the CLI records by value (server/cli.py _audit("token_created", ...)).
TOKEN_CREATED
TOKEN_REVOKED
GATEWAY_TOKEN_ROTATED

# Library hooks.
_.handle_starttag  # html.parser.HTMLParser (bench/page_weight.py)
_.data_received  # asyncio.Protocol (server/http_guard.py)
_.handle_DATA  # aiosmtpd handler (tests/server/notify/receivers.py)
