#!/bin/sh
# Grafana's entrypoint in the compose stack: provisions deploy/grafana/gatehouse-dashboard.json
# (mounted read-only), then runs the given command (the image's /run.sh).
#
# The dashboard is made for Grafana's import dialog: its panels name their data source
# `${DS_PROMETHEUS}`, an input that only the dialog fills in. Provisioned from a file, the
# panels would say "Datasource ${DS_PROMETHEUS} was not found", so this writes a copy
# with the provisioned data source's uid instead (provisioning/datasources/prometheus.yml).
#
# Variables (for tests): GATEHOUSE_DASHBOARD (the file), DASHBOARD_DIR (where the copy
# goes), DATASOURCE_UID.
set -eu
src=${GATEHOUSE_DASHBOARD:-/etc/gatehouse/grafana/gatehouse-dashboard.json}
dir=${DASHBOARD_DIR:-/var/lib/grafana/dashboards}
uid=${DATASOURCE_UID:-prometheus}
mkdir -p "$dir"
sed -e "s/[\$]{DS_PROMETHEUS}/$uid/g" "$src" > "$dir/gatehouse-dashboard.json.tmp"
mv "$dir/gatehouse-dashboard.json.tmp" "$dir/gatehouse-dashboard.json"
exec "$@"
