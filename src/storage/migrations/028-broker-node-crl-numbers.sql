-- Several CAs (issue 19): the CRL number a broker node applied, per CA (issuer key id → decimal
-- number), so its lag is measured against every CA's latest CRL, not only the lowest number.
ALTER TABLE broker_nodes ADD COLUMN crl_numbers jsonb;
