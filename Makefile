# dhcpleased for Linux — developer entry points.
#   make check   virtual environment + ruff + mypy --strict + pytest (integration tests need root)
#   make demo    (root) a real lease from dnsmasq in a throwaway network namespace
#   make bench   (root) dhcpleased side by side with dhcpcd, dhclient and udhcpc (bench/)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: check lint typecheck test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check dhcpleased dhcpleasectl tests
	$(BIN)/ruff format --check dhcpleased dhcpleasectl tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict dhcpleased dhcpleasectl

test: $(STAMP)
	$(BIN)/pytest

check: lint typecheck test

demo: $(STAMP)
	bash tests/integration/prepare.sh
	$(BIN)/python -m tests.integration.demo

# Not part of check: takes ~15 minutes, installs the peers' Debian packages if missing and
# writes bench/RESULTS.md.  BENCH_ARGS=--quick for a short smoke run.
bench: $(STAMP)
	bash tests/integration/prepare.sh
	$(BIN)/python -m bench.run --out bench/RESULTS.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# --- install / uninstall (a system install; packagers set DESTDIR and PREFIX) ----------
# The package and its two dependencies go into a private virtual environment in
# $(LIBDIR): its interpreter is what the parent re-executes for its children, so the
# daemon never depends on the system's site-packages (nor changes them: PEP 668).
# PIPFLAGS passes options to pip, e.g. --no-index --find-links=DIR for offline builds.
# INIT picks the script for /etc/init.d: openrc, sysv or none (systemd units always go in).
PREFIX      ?= /usr/local
DESTDIR     ?=
SYSCONFDIR  ?= /etc
SBINDIR     ?= $(PREFIX)/sbin
LIBDIR      ?= $(PREFIX)/lib/dhcpleased
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/dhcpleased
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
PIPFLAGS    ?=
INIT        ?= $(shell if command -v openrc-run >/dev/null 2>&1; then echo openrc; \
                 elif [ -d /run/systemd/system ] || [ ! -d /etc/init.d ]; then echo none; \
                 else echo sysv; fi)
# The interpreter the daemon's environment is built on must stay visible to the service:
# the unit's ProtectHome= hides /home, /root and /run/user, so a pyenv, conda or ~/.local
# Python there would fail every start (status 203/EXEC).  By default: the first Python
# >= 3.11 outside them, from PATH's python3, /usr/bin/python3, /usr/local/bin/python3.
HIDDEN_DIRS ?= /home /root /run/user
PY_VISIBLE   = import os, sys; e = os.path.realpath(sys._base_executable); \
               sys.exit(sys.version_info < (3, 11) or any(e.startswith(d + "/") for d in sys.argv[1:]))
PYTHON_SYS  ?= $(or $(firstword $(foreach p,$(shell command -v python3) /usr/bin/python3 \
                 /usr/local/bin/python3,$(shell '$(p)' -c '$(PY_VISIBLE)' $(HIDDEN_DIRS) \
                 2>/dev/null && echo '$(p)'))),python3)
D            = $(DESTDIR)

.PHONY: install uninstall

install:
	rm -rf '$(D)$(LIBDIR)'
	$(PYTHON_SYS) -m venv '$(D)$(LIBDIR)'
	@base=$$('$(D)$(LIBDIR)/bin/python3' -c 'import os, sys; print(os.path.realpath(sys._base_executable))'); \
	for d in $(HIDDEN_DIRS); do case "$$base" in "$$d"/*) \
		echo "make install: the daemon's interpreter would be $$base, under $$d, which the" >&2; \
		echo "service's ProtectHome= hides: it could not start.  Use a Python >= 3.11 outside" >&2; \
		echo "$(HIDDEN_DIRS), e.g. make install PYTHON_SYS=/usr/bin/python3 (Debian: python3-venv)." >&2; \
		rm -rf '$(D)$(LIBDIR)'; exit 1 ;; esac; done
	'$(D)$(LIBDIR)/bin/python' -m pip install -q --no-compile --disable-pip-version-check $(PIPFLAGS) .
	'$(D)$(LIBDIR)/bin/python' -m pip uninstall -q -y pip setuptools
	@# a daemon's environment, not a developer's: no activate scripts, no pip, no
	@# console scripts whose #! would name DESTDIR; byte-code compiled for its real path
	find '$(D)$(LIBDIR)/bin' -mindepth 1 ! -name 'python*' -delete
	sed -i 's|$(D)$(LIBDIR)|$(LIBDIR)|g' '$(D)$(LIBDIR)/pyvenv.cfg'
	'$(D)$(LIBDIR)/bin/python' -m compileall -q -s '$(D)' -p / '$(D)$(LIBDIR)/lib'
	install -d '$(D)$(SBINDIR)'
	for cmd in dhcpleased dhcpleasectl; do \
		printf '#!%s -I\nfrom %s.main import run\n\nrun()\n' \
			'$(LIBDIR)/bin/python3' $$cmd > '$(D)$(SBINDIR)'/$$cmd; \
		chmod 0755 '$(D)$(SBINDIR)'/$$cmd; \
	done
	install -d '$(D)$(SYSCONFDIR)' '$(D)$(DOCDIR)'
	install -m 0644 etc/dhcpleased.conf '$(D)$(DOCDIR)/dhcpleased.conf.example'
	[ -e '$(D)$(SYSCONFDIR)/dhcpleased.conf' ] || \
		install -m 0644 etc/dhcpleased.conf '$(D)$(SYSCONFDIR)/dhcpleased.conf'
	install -d '$(D)$(MANDIR)/man5' '$(D)$(MANDIR)/man8'
	install -m 0644 man/dhcpleased.conf.5 '$(D)$(MANDIR)/man5/'
	install -m 0644 man/dhcpleased.8 man/dhcpleasectl.8 '$(D)$(MANDIR)/man8/'
	install -d '$(D)$(BASHCOMPDIR)'
	install -m 0644 completions/dhcpleased.bash '$(D)$(BASHCOMPDIR)/dhcpleased'
	install -m 0644 completions/dhcpleasectl.bash '$(D)$(BASHCOMPDIR)/dhcpleasectl'
	install -d '$(D)$(UNITDIR)' '$(D)$(SYSUSERSDIR)' '$(D)$(TMPFILESDIR)'
	sed 's|/usr/sbin/|$(SBINDIR)/|g' rc.d/dhcpleased.service > '$(D)$(UNITDIR)/dhcpleased.service'
	chmod 0644 '$(D)$(UNITDIR)/dhcpleased.service'
	install -m 0644 rc.d/dhcpleased.sysusers '$(D)$(SYSUSERSDIR)/dhcpleased.conf'
	install -m 0644 rc.d/dhcpleased.tmpfiles '$(D)$(TMPFILESDIR)/dhcpleased.conf'
	case '$(INIT)' in \
	openrc|sysv) install -d '$(D)$(SYSCONFDIR)/init.d'; \
		sed 's|/usr/sbin/|$(SBINDIR)/|g' rc.d/dhcpleased.$(subst sysv,init,$(INIT)) \
			> '$(D)$(SYSCONFDIR)/init.d/dhcpleased'; \
		chmod 0755 '$(D)$(SYSCONFDIR)/init.d/dhcpleased' ;; \
	none) ;; \
	*) echo "INIT=$(INIT): openrc, sysv or none" >&2; exit 1 ;; \
	esac
	@# on the live system (no DESTDIR): the _dhcp user and the lease directory now,
	@# through sysusers/tmpfiles where they exist, else by hand
	if [ -z '$(D)' ]; then \
		if command -v systemd-sysusers >/dev/null 2>&1; then \
			systemd-sysusers '$(SYSUSERSDIR)/dhcpleased.conf' && \
			systemd-tmpfiles --create '$(TMPFILESDIR)/dhcpleased.conf'; \
		else \
			getent passwd _dhcp >/dev/null || useradd --system --no-create-home \
				--home-dir /nonexistent --shell /usr/sbin/nologin _dhcp || \
				adduser -S -D -H -h /nonexistent -s /sbin/nologin _dhcp; \
			install -d -m 0755 /var/lib/dhcpleased; \
		fi; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi

# Leaves what the admin or the daemon made: a changed /etc/dhcpleased.conf, the leases
# in /var/lib/dhcpleased and the _dhcp user (uid reuse would hand over its files).
uninstall:
	rm -rf '$(D)$(LIBDIR)'
	rm -f '$(D)$(SBINDIR)/dhcpleased' '$(D)$(SBINDIR)/dhcpleasectl'
	if cmp -s etc/dhcpleased.conf '$(D)$(SYSCONFDIR)/dhcpleased.conf'; then \
		rm -f '$(D)$(SYSCONFDIR)/dhcpleased.conf'; fi
	rm -f '$(D)$(DOCDIR)/dhcpleased.conf.example'
	-rmdir '$(D)$(DOCDIR)' 2>/dev/null
	rm -f '$(D)$(MANDIR)/man5/dhcpleased.conf.5' '$(D)$(MANDIR)/man8/dhcpleased.8' \
		'$(D)$(MANDIR)/man8/dhcpleasectl.8'
	rm -f '$(D)$(BASHCOMPDIR)/dhcpleased' '$(D)$(BASHCOMPDIR)/dhcpleasectl'
	rm -f '$(D)$(UNITDIR)/dhcpleased.service' '$(D)$(SYSUSERSDIR)/dhcpleased.conf' \
		'$(D)$(TMPFILESDIR)/dhcpleased.conf'
	if grep -qs 'dhcpleased(8)' '$(D)$(SYSCONFDIR)/init.d/dhcpleased'; then \
		rm -f '$(D)$(SYSCONFDIR)/init.d/dhcpleased'; fi
	if [ -z '$(D)' ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
