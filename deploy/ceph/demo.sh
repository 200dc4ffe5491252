#!/usr/bin/env bash
# A single-host Ceph cluster with RGW for a pilot (deploy/compose.yaml): one monitor, one
# manager, one OSD on a BlueStore file in /var/lib/ceph, pool size 1, and radosgw on :7480
# with the S3 user examvault. Not for production: one disk, one host, no replication. A
# production cluster is built with cephadm or Rook (docs/operations.md "Deployment").
# Idempotent: a restart reuses the cluster in the volume.
set -euo pipefail

FSID_FILE=/var/lib/ceph/fsid
ACCESS_KEY="$(cat /run/secrets/s3_access_key)"
SECRET_KEY="$(cat /run/secrets/s3_secret_key)"
OSD_SIZE="${CEPH_DEMO_OSD_BYTES:-107374182400}"
HOST="$(hostname -s)"

mkdir -p /etc/ceph /var/lib/ceph/mon /var/lib/ceph/mgr /var/lib/ceph/osd /var/lib/ceph/radosgw /var/log/ceph /var/run/ceph
[ -s "$FSID_FILE" ] || uuidgen > "$FSID_FILE"
FSID="$(cat "$FSID_FILE")"
IP="$(hostname -i | awk '{print $1}')"

cat > /etc/ceph/ceph.conf <<CONF
[global]
fsid = $FSID
mon initial members = $HOST
mon host = v2:$IP:3300
auth cluster required = none
auth service required = none
auth client required = none
# All six, as tests/ceph.py (checked on Debian's 16.2): without the mon ones radosgw hangs in
# authentication (get_initial_auth_request returned -13) and gives up after 300 s.
ms mon client mode = crc
ms client mode = crc
ms mon service mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon cluster mode = crc
# RGW makes about eight pools: small fixed PG counts keep one OSD under its PG limit.
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $OSD_SIZE
[client.rgw.$HOST]
rgw frontends = beast port=7480
rgw dns name = ceph
CONF

if [ ! -e "/var/lib/ceph/mon/ceph-$HOST/done" ]; then
  monmaptool --create --addv "$HOST" "[v2:$IP:3300]" --fsid "$FSID" /tmp/monmap
  ceph-mon --mkfs -i "$HOST" --monmap /tmp/monmap
  touch "/var/lib/ceph/mon/ceph-$HOST/done"
fi
ceph-mon -i "$HOST"
mkdir -p "/var/lib/ceph/mgr/ceph-$HOST"
ceph-mgr -i "$HOST"

if [ ! -e /var/lib/ceph/osd/ceph-0/done ]; then
  OSD_ID="$(ceph osd create)"
  mkdir -p "/var/lib/ceph/osd/ceph-$OSD_ID"
  ceph-osd -i "$OSD_ID" --mkfs
  ceph osd crush add "osd.$OSD_ID" 1.0 host="$HOST" root=default
  touch "/var/lib/ceph/osd/ceph-$OSD_ID/done"
fi
ceph-osd -i 0

radosgw-admin user info --uid examvault >/dev/null 2>&1 \
  || radosgw-admin user create --uid examvault --display-name examvault \
       --access-key "$ACCESS_KEY" --secret "$SECRET_KEY" >/dev/null
exec radosgw -f -n "client.rgw.$HOST"
