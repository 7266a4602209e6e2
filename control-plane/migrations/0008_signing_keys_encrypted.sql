-- Private signing keys are kept encrypted with SIGNING_KEYS_SECRET (control-plane/auth/key-encryption.ts):
-- `private_key_sealed` holds a versioned AES-256-GCM envelope of the private JWK. Rows written by
-- earlier versions keep their plaintext `private_jwk` until the control plane's next start encrypts
-- them in place (SQL cannot: it never sees the secret); a row has exactly one of the two.
alter table signing_keys add column private_key_sealed text;
alter table signing_keys alter column private_jwk drop not null;
alter table signing_keys add constraint signing_keys_one_private_key
  check (num_nonnulls(private_jwk, private_key_sealed) = 1);
