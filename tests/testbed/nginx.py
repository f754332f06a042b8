"""Generate an nginx configuration and run Debian's nginx in the foreground."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from .procs import ManagedProcess

__all__ = ["NGINX", "NginxOptions", "nginx_config", "start_nginx"]

NGINX = "/usr/sbin/nginx"

# nginx answers for longer than any test waits, but a hung backend must
# not hang a test run: a few seconds is plenty on loopback.
_UPSTREAM_TIMEOUT = "5s"


@dataclass(frozen=True, slots=True)
class NginxOptions:
    """The nginx knobs a test can turn.

    ``gzip`` compresses text responses of at least ``gzip_min_length``
    bytes; ``keep_conn`` reuses FastCGI connections (``fastcgi_keep_conn``
    and an upstream ``keepalive`` pool); ``buffering`` is
    ``fastcgi_buffering``.  ``script`` is sent as SCRIPT_FILENAME (php-fpm
    needs it).  ``extra_http`` and ``extra_location`` are pasted verbatim
    into the ``http`` and ``location`` blocks.
    """

    gzip: bool = False
    gzip_min_length: int = 256
    keep_conn: bool = False
    keepalive_connections: int = 8
    buffering: bool = True
    script: str = "/nonexistent/index.php"
    extra_http: str = ""
    extra_location: str = ""
    read_timeout: str = _UPSTREAM_TIMEOUT  # fastcgi_read_timeout


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def nginx_config(
    workdir: Path, listen_port: int, fcgi_port: int, options: NginxOptions
) -> str:
    """Return a complete nginx.conf whose files all live under ``workdir``."""
    keepalive = ""
    if options.keep_conn:
        keepalive = f"keepalive {options.keepalive_connections};"
    gzip = ""
    if options.gzip:
        gzip = f"""
        gzip on;
        gzip_types text/plain text/css application/json application/javascript;
        gzip_min_length {options.gzip_min_length};
        gzip_comp_level 1;
        gzip_proxied any;
        gzip_vary on;"""
    return f"""\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;

events {{
    worker_connections 512;
}}

http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/client_body;
    fastcgi_temp_path {workdir}/fastcgi_temp;
    proxy_temp_path {workdir}/proxy_temp;
    scgi_temp_path {workdir}/scgi_temp;
    uwsgi_temp_path {workdir}/uwsgi_temp;
    default_type application/octet-stream;
    keepalive_requests 10000;
    {options.extra_http}

    upstream app {{
        server 127.0.0.1:{fcgi_port};
        {keepalive}
    }}

    server {{
        listen 127.0.0.1:{listen_port};
        server_name testbed;
        {gzip}

        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn {_on(options.keep_conn)};
            fastcgi_buffering {_on(options.buffering)};
            fastcgi_connect_timeout {_UPSTREAM_TIMEOUT};
            fastcgi_read_timeout {options.read_timeout};
            fastcgi_send_timeout {_UPSTREAM_TIMEOUT};
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param SCRIPT_FILENAME {options.script};
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            {options.extra_location}
        }}
    }}
}}
"""


def start_nginx(
    workdir: Path, listen_port: int, fcgi_port: int, options: NginxOptions
) -> ManagedProcess:
    """Write the config into ``workdir`` and start nginx on ``listen_port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, listen_port, fcgi_port, options))
    # -p: prefix; -e: the error log used before the config is read.
    error_log = str(workdir / "error.log")
    argv = [NGINX, "-p", str(workdir), "-e", error_log, "-c", str(conf)]
    # SIGQUIT is nginx's graceful shutdown: idle keep-alive connections
    # (client and upstream) are closed with FIN, so captures end cleanly.
    return ManagedProcess(
        "nginx", argv, workdir / "nginx.out", cwd=workdir, stop_signal=signal.SIGQUIT
    )
