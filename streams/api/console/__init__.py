"""The operator console: server-rendered pages under ``/console`` of the till API's process.

- ``routes``: the pages and forms (``install_console(app)``, called by ``streams.api.app``);
- ``web``: sessions from cookies, forms and CSRF, page rendering (Jinja2, autoescaped);
- ``sessions``: the sign-in sessions table (``console_sessions``);
- ``member_page``: the member page's figures from the API's reads;
- ``dead_letters``: the dead-letter index and the record of re-drives;
- ``actions``: re-drive and adjust, the way of ``POST /v1/events``;
- ``overview``: KPI rows, throughput, lags, the API's own metrics;
- ``campaigns``: the ``campaigns`` read model's rows, when it exists;
- ``templates/``, ``static/console.css``: the pages and their one stylesheet (no JavaScript).
"""
