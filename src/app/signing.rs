//! Signing: the license string of a borrow (deterministic, cached by borrow) and the
//! return token, both keyed by the ledger's signing key.

use std::sync::Arc;

use super::{App, AppError, IssuedLicense};
use crate::borrow::document::{LicenseDocument, LicenseSigner};
use crate::borrow::return_token::ReturnTokenKey;
use crate::borrow::time::format_instant;
use crate::state::BorrowRecord;

impl App {
    pub(super) fn signer(&self) -> Result<Arc<LicenseSigner>, AppError> {
        if let Some(signer) = self.signer.get() {
            return Ok(signer.clone());
        }
        let secret =
            *self.node.ledger.read().signing_key().ok_or_else(|| {
                AppError::Unavailable("the ledger has no license pool yet".into())
            })?;
        let signer = Arc::new(LicenseSigner::from_secret_bytes(&secret));
        Ok(self.signer.get_or_init(|| signer).clone())
    }

    /// The key of return tokens, derived from the signing key once it is known.
    pub(super) fn return_tokens(&self) -> Result<&ReturnTokenKey, AppError> {
        if let Some(key) = self.return_tokens.get() {
            return Ok(key);
        }
        let key = ReturnTokenKey::from_signing_secret(&self.signer()?.secret_bytes());
        Ok(self.return_tokens.get_or_init(|| key))
    }

    /// Renders and signs a borrow's license document. Deterministic: the same record gives
    /// the same string on every node, every time.
    pub(super) fn issue(&self, record: &BorrowRecord) -> Result<IssuedLicense, AppError> {
        let signer = self.signer()?;
        let license = self
            .signed
            .get_or_sign(record.borrow_id, record.valid_until, || {
                signer.sign(&document_for(record, signer.key_id()))
            });
        Ok(IssuedLicense {
            license,
            borrow_id: record.borrow_id,
            return_token: None,
        })
    }
}

/// The document a borrow's license string carries.
pub fn document_for(record: &BorrowRecord, key_id: &str) -> LicenseDocument {
    LicenseDocument {
        format: 1,
        feature: record.key.feature.clone(),
        uuid: record.key.uuid.clone(),
        version: record.version.clone(),
        edition: record.edition.clone(),
        modules: record.modules.clone(),
        host_id: record.host_id.to_string(),
        valid_from: format_instant(record.valid_from),
        valid_until: format_instant(record.valid_until),
        borrow_id: record.borrow_id.to_string(),
        user_info: record.user_info.clone(),
        issued_at: format_instant(record.issued_at),
        key_id: key_id.to_string(),
    }
}
