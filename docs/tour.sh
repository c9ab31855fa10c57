#!/usr/bin/env bash
# A tour of the API, top to bottom: the README's walkthrough, as a script that checks itself.
#
#   make run              # in one terminal: it serves on :6543 and prints `export TOKEN=...`
#   export TOKEN=...      # in another: that line (a token with the scopes read and write)
#   bash docs/tour.sh     # BASE=http://host:port bash docs/tour.sh for another server
#
# Each step prints "STATUS METHOD PATH" and the start of the response body, and the script stops
# (exit 1) at the first answer whose status is not the one the step expects. It deletes what it
# creates, so it runs again on the same database. tests/test_tour.py runs it against the real
# server on a fresh database of each kind, so it keeps step with the service. Every answer is
# explained in docs/api.md. Needs bash, curl and python3 (to read JSON).
set -euo pipefail

BASE=${BASE:-http://127.0.0.1:6543}
: "${TOKEN:?export TOKEN=... first: make run prints it}"

reply=$(mktemp -d)
trap 'rm -rf "$reply"' EXIT

# request EXPECTED METHOD PATH [curl options...]: send it, print the answer, stop unless its
# status is EXPECTED. The answer stays in $reply/headers and $reply/body.
request() {
    local expected=$1 method=$2 path=$3 status body
    shift 3
    : > "$reply/body"  # curl writes no file for an answer without a body (204, 304)
    status=$(curl -sS -X "$method" "$BASE$path" -D "$reply/headers" -o "$reply/body" \
                  -w '%{http_code}' "$@")
    echo "$status $method $path"
    body=$(cat "$reply/body")
    if [ ${#body} -gt 160 ]; then body="${body:0:160}..."; fi
    if [ -n "$body" ]; then echo "    $body"; fi
    if [ "$status" != "$expected" ]; then
        echo "tour.sh: $method $path answered $status, expected $expected" >&2
        exit 1
    fi
}

# call EXPECTED METHOD PATH [curl options...]: a request with the token.
call() {
    request "$1" "$2" "$3" -H "Authorization: Bearer $TOKEN" "${@:4}"
}

# send EXPECTED METHOD PATH JSON [curl options...]: a request with the token and a JSON body
# (a JSON merge patch for PATCH).
send() {
    local type=application/json
    if [ "$2" = PATCH ]; then type=application/merge-patch+json; fi
    call "$1" "$2" "$3" -H "Content-Type: $type" -d "$4" "${@:5}"
}

# header NAME: that header of the last answer (any case).
header() {
    awk -v name="$1" '
        tolower($0) ~ "^" tolower(name) ":" { sub(/^[^:]*: */, ""); sub(/\r$/, ""); print }
    ' "$reply/headers"
}

# json KEY...: a value in the last answer's JSON body (json items 0 id: body["items"][0]["id"]).
json() {
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[int(key)] if isinstance(value, list) else value[key]
print(value)' "$@" < "$reply/body"
}

# created: the id at the end of the last answer's Location.
created() {
    local location
    location=$(header Location)
    echo "${location##*/}"
}

# expect WHAT ACTUAL EXPECTED: stop unless ACTUAL is EXPECTED.
expect() {
    if [ "$2" != "$3" ]; then
        echo "tour.sh: $1 is '$2', expected '$3'" >&2
        exit 1
    fi
}

## Tokens: every call but /health, /health/ready, /openapi.json and /docs needs one.
request 401 GET /users                              # no token: 401 with WWW-Authenticate
call 200 GET /users                                 # scope read: every GET

## Users: create (201, Location, ETag "1"); read (200, or 304 while If-None-Match is current).
send 201 POST /users '{"username": "Ada", "email": "ada@example.com", "full_name": "Ada Lovelace"}'
ada=$(created)
call 200 GET "/users/$ada"
call 304 GET "/users/$ada" -H 'If-None-Match: "1"'

## Bulk create: 201 with the users in request order; all or nothing.
send 201 POST /users/bulk '{"users": [{"username": "grace", "email": "grace@example.com"},
                                      {"username": "linus", "email": "linus@example.com"}]}'
grace=$(json items 0 id)
linus=$(json items 1 id)

## Lists: a page at a time by id; next_cursor (and Link: rel="next") gets the next page.
call 200 GET "/users?limit=2"
cursor=$(json next_cursor)
call 200 GET "/users?limit=2&cursor=$cursor"
call 200 GET "/users?username=ADA"                  # exact, in any case
call 200 GET "/users?email=Ada@Example.com"

## Update: a JSON merge patch; If-Match makes it conditional, and a stale version is a 412.
send 200 PATCH "/users/$ada" '{"full_name": "Augusta Ada King"}' -H 'If-Match: "1"'
send 412 PATCH "/users/$ada" '{"full_name": "Ada"}' -H 'If-Match: "1"'

## Retrying a create safely: the same Idempotency-Key and body replay the first answer.
key="tour-$(date +%s)-$$"                           # one key per intended creation
hopper_body='{"username": "hopper", "email": "hopper@example.com"}'
send 201 POST /users "$hopper_body" -H "Idempotency-Key: $key"
hopper=$(created)
send 201 POST /users "$hopper_body" -H "Idempotency-Key: $key"       # replayed: no second user
expect "Idempotent-Replayed" "$(header Idempotent-Replayed)" true
expect "the replayed Location's id" "$(created)" "$hopper"

## Errors are problem documents (application/problem+json); errors[].pointer names each field.
send 422 POST /users '{"username": "x"}'
send 409 POST /users '{"username": "ada", "email": "someone@example.com"}'

## Groups: the same rules as users; max_members null means no limit.
send 201 POST /groups '{"name": "Ops", "description": "on call", "max_members": 10}'
ops=$(created)
call 200 GET "/groups/$ops"
call 304 GET "/groups/$ops" -H 'If-None-Match: "1"'
call 200 GET "/groups?name=OPS"                     # exact, in any case
send 200 PATCH "/groups/$ops" '{"max_members": 2}' -H 'If-Match: "1"'

## Memberships: 201 when added, 200 when a member already, 409 when the group is full. Each
## change is a new version of the group (its member_count and ETag change).
call 201 PUT "/groups/$ops/members/$ada"
call 200 PUT "/groups/$ops/members/$ada"
call 201 PUT "/groups/$ops/members/$grace"
call 409 PUT "/groups/$ops/members/$linus"          # full: max_members is 2
call 200 GET "/groups/$ops/members?limit=50"        # a page of its users
call 200 GET "/users/$grace/groups?limit=50"        # a page of her groups
call 204 DELETE "/groups/$ops/members/$grace"
call 404 DELETE "/groups/$ops/members/$grace"       # not a member

## The change feed: every committed write once, oldest first; poll with after=next_after.
call 200 GET "/changes?after=0&limit=2"
call 200 GET "/changes?after=$(json next_after)&limit=2"

## Delete: 204 (If-Match works here too). A user leaves every group; a group's members go with it.
call 204 DELETE "/users/$ada" -H 'If-Match: "2"'
call 204 DELETE "/groups/$ops"
call 204 DELETE "/users/$grace"
call 204 DELETE "/users/$linus"
call 204 DELETE "/users/$hopper"
call 404 GET "/users/$ada"

## Operations, without a token: the process is up; the database answers (and the mode).
request 200 GET /health
request 200 GET /health/ready

echo "tour.sh: every step answered as expected"
