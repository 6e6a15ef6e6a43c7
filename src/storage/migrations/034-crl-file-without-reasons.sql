-- The broker file variant of a CRL (no Issuing Distribution Point) now lists its entries without
-- crlEntryExtensions (reason codes): brokers never read them, and OpenSSL's parse of them was a large
-- part of a Mosquitto reload. Only the file variant's signature is stored (file_signature); this says
-- which TBS it was made over, so every process rebuilds the same file bytes. Rows stored before keep
-- false (their file variant listed the reasons).
ALTER TABLE crl_state ADD COLUMN file_without_entry_extensions boolean NOT NULL DEFAULT false;
