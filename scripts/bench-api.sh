#!/usr/bin/env bash
# Latency of the API's dashboard and search endpoints: N sequential requests per endpoint, p50/p95/max
# in milliseconds (curl's time_total). Not a test: run it against a loaded database by hand.
#
# Usage: scripts/bench-api.sh BASE_URL TOKEN [N]
#   e.g. scripts/bench-api.sh http://127.0.0.1:8080 "$TOKEN" 40
set -euo pipefail
BASE=$1
TOKEN=$2
N=${3:-40}

measure() {
    local name=$1 path=$2 times status
    times=$(for _ in $(seq "$N"); do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $TOKEN" "$BASE$path"
    done)
    status=$(echo "$times" | awk '{print $1}' | sort -u | tr '\n' ' ')
    echo "$times" | awk '{print $2 * 1000}' | sort -n | awk -v name="$name" -v n="$N" -v status="$status" '
        { v[NR] = $1 }
        END { p50 = v[int(n * 0.50 + 0.5)]; p95 = v[int(n * 0.95 + 0.5)];
              printf "%-34s n=%d status=%s p50=%7.1f ms  p95=%7.1f ms  max=%7.1f ms\n", name, n, status, p50, p95, v[n] }'
}

echo "# dashboard endpoints"
measure "overview (24h)" "/api/overview?last=24h"
measure "overview (7d)" "/api/overview?last=7days"
measure "alerts queue (24h)" "/api/alerts?last=24h"
measure "alert groups by rule (7d)" "/api/alerts/groups?by=rule&last=7days"
measure "sensor health (24h)" "/api/health/sensors?last=24h"
measure "rule health (7d)" "/api/health/rules?last=7days"
echo "# search and pivots"
measure "search flow port (24h)" "/api/search?dataset=flow&q=destination.port%3A22&last=24h"
measure "search CIDR+NOT (24h)" "/api/search?dataset=flow&q=source.ip%20in%2010.3.0.0%2F16%20AND%20NOT%20destination.port%3A53&last=24h"
measure "search CIDR (7d)" "/api/search?dataset=flow&q=source.ip%20in%2010.3.7.0%2F24&last=7days"
measure "search no match (10d)" "/api/search?dataset=flow&q=flow.state%3AREJ&last=10days"
measure "pivot address (24h)" "/api/pivot/address/10.3.7.9?last=24h"
measure "pivot community (all)" "/api/pivot/community/1%3A123456"
