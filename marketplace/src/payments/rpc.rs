//! A JSON-RPC client for an EVM chain (BNB Smart Chain or any Ethereum-compatible node): the
//! few calls that find a transfer and count its confirmations, and sending a signed one.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use gata_wallet::{Account, Address, LegacyTx};
use serde_json::{Value, json};
use url::Url;

use crate::{MarketError, Result};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from the node.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A transaction as the chain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTx {
    /// Sender.
    pub from: Address,
    /// Recipient (none for a contract creation).
    pub to: Option<Address>,
    /// Value, wei.
    pub value: u128,
    /// Call data.
    pub input: Vec<u8>,
    /// The block holding it (none while pending).
    pub block: Option<u64>,
}

/// An EVM chain's JSON-RPC endpoint.
#[derive(Debug)]
pub struct ChainRpc {
    http: reqwest::Client,
    url: Url,
    next_id: AtomicU64,
}

fn chain_err(method: &'static str, reason: impl Into<String>) -> MarketError {
    MarketError::Chain { method, reason: reason.into() }
}

/// A `0x`-prefixed hex quantity.
fn quantity(method: &'static str, v: &Value) -> Result<u128> {
    let text = v
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .ok_or_else(|| chain_err(method, format!("{v} is no quantity")))?;
    u128::from_str_radix(if text.is_empty() { "0" } else { text }, 16)
        .map_err(|e| chain_err(method, format!("{v}: {e}")))
}

fn address(method: &'static str, v: &Value) -> Result<Address> {
    v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| chain_err(method, format!("{v} is no address")))
}

impl ChainRpc {
    /// A client of the node at `url`.
    pub fn new(url: Url) -> ChainRpc {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
        ChainRpc { http, url, next_id: AtomicU64::new(1) }
    }

    async fn call(&self, method: &'static str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = self
            .http
            .post(self.url.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| chain_err(method, e.to_string()))?;
        let bytes = response.bytes().await.map_err(|e| chain_err(method, e.to_string()))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(chain_err(method, format!("answer of {} bytes", bytes.len())));
        }
        let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| chain_err(method, e.to_string()))?;
        if let Some(error) = answer.get("error") {
            return Err(chain_err(method, error.to_string()));
        }
        Ok(answer.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// The latest block's number.
    pub async fn block_number(&self) -> Result<u64> {
        let n = quantity("eth_blockNumber", &self.call("eth_blockNumber", json!([])).await?)?;
        u64::try_from(n).map_err(|_| chain_err("eth_blockNumber", "out of range"))
    }

    /// The transaction `hash` (`0x…`), if the node knows it.
    pub async fn transaction(&self, hash: &str) -> Result<Option<ChainTx>> {
        const M: &str = "eth_getTransactionByHash";
        let tx = self.call(M, json!([hash])).await?;
        if tx.is_null() {
            return Ok(None);
        }
        let input = tx["input"].as_str().and_then(|s| s.strip_prefix("0x")).unwrap_or("");
        Ok(Some(ChainTx {
            from: address(M, &tx["from"])?,
            to: if tx["to"].is_null() { None } else { Some(address(M, &tx["to"])?) },
            value: quantity(M, &tx["value"])?,
            input: hex::decode(input).map_err(|e| chain_err(M, format!("input: {e}")))?,
            block: if tx["blockNumber"].is_null() {
                None
            } else {
                Some(u64::try_from(quantity(M, &tx["blockNumber"])?).map_err(|_| chain_err(M, "block out of range"))?)
            },
        }))
    }

    /// Whether the transaction `hash` succeeded, once it is in a block.
    pub async fn succeeded(&self, hash: &str) -> Result<Option<bool>> {
        const M: &str = "eth_getTransactionReceipt";
        let receipt = self.call(M, json!([hash])).await?;
        if receipt.is_null() {
            return Ok(None);
        }
        Ok(Some(quantity(M, &receipt["status"])? == 1))
    }

    /// The next nonce of `account`.
    pub async fn nonce(&self, account: Address) -> Result<u64> {
        const M: &str = "eth_getTransactionCount";
        let n = quantity(M, &self.call(M, json!([account.to_string(), "latest"])).await?)?;
        u64::try_from(n).map_err(|_| chain_err(M, "out of range"))
    }

    /// Signs and sends a transfer of `value` wei with `data` from `from` to `to` on chain
    /// `chain_id`, at the account's next nonce (60 000 gas at 1 gwei, enough for a transfer with
    /// a payment reference); answers its hash.
    pub async fn transfer(
        &self,
        from: &Account,
        to: Address,
        value: u128,
        data: Vec<u8>,
        chain_id: u64,
    ) -> Result<String> {
        let nonce = self.nonce(from.address()).await?;
        let tx = LegacyTx { nonce, gas_price: 1_000_000_000, gas: 60_000, to: Some(to), value, data, chain_id };
        let raw = tx.sign(from).map_err(|e| chain_err("eth_sendRawTransaction", e.to_string()))?;
        self.send_raw(&raw).await
    }

    /// Sends a signed transaction; answers its hash.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<String> {
        const M: &str = "eth_sendRawTransaction";
        let hash = self.call(M, json!([format!("0x{}", hex::encode(raw))])).await?;
        hash.as_str().map(str::to_string).ok_or_else(|| chain_err(M, format!("{hash} is no hash")))
    }
}
