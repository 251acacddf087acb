"""Date formats of the admin. An audit needs the second and the zone ("Nov. 26, 2026, 2:29 p.m."
is what Django's English locale would show), and ISO order sorts and pastes into tickets cleanly."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
