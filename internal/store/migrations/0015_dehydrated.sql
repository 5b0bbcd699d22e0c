-- Dehydrated devices (MSC3814; internal/store/dehydrated.go,
-- internal/e2ee/dehydrated.go). A user has at most one: a row of the
-- devices table without access tokens, which receives to-device messages
-- and has keys like any device, and this row with the data the client
-- stored to rehydrate it. Deleting the device (any route: PUT of a new
-- dehydrated device, DELETE /dehydrated_device, DELETE /devices/{id},
-- /logout/all, deactivation) deletes this row with it.
CREATE TABLE dehydrated_devices (
    localpart   TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    device_data BLOB NOT NULL,           -- a JSON object, as the client sent it
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
