//! A client of the Greenfield chain's REST gateway: reads an account's number and sequence
//! (`GET /cosmos/auth/v1beta1/accounts/{address}`), signs transactions for it and broadcasts
//! them (`POST /cosmos/tx/v1beta1/txs`, synchronous mode: the answer carries the result of the
//! chain's checks).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::{
    Account, GreenfieldError, Result,
    tx::{self, Msg, TxParams, proto::Coin},
};

/// Messages the mirror puts in one transaction.
pub const MSGS_PER_TX: usize = 8;

/// Where the chain is and what its transactions pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The REST gateway (`https://gnfd-testnet-fullnode-tendermint-us.bnbchain.org`).
    pub endpoint: Url,
    /// The chain id (`greenfield_5600-1` on testnet, `greenfield_1017-1` on mainnet).
    pub chain_id: String,
    /// Gas allowed per message.
    #[serde(default = "default_gas_per_message")]
    pub gas_per_message: u64,
    /// Price of a unit of gas in BNB base units (wei).
    #[serde(default = "default_gas_price")]
    pub gas_price: u64,
    /// Request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_gas_per_message() -> u64 {
    1200
}

fn default_gas_price() -> u64 {
    5_000_000_000
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl ChainConfig {
    /// A configuration with the default gas and timeout.
    pub fn new(endpoint: Url, chain_id: impl Into<String>) -> ChainConfig {
        ChainConfig {
            endpoint,
            chain_id: chain_id.into(),
            gas_per_message: default_gas_per_message(),
            gas_price: default_gas_price(),
            timeout: default_timeout(),
        }
    }
}

/// An account's number and next sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountState {
    /// Assigned when the account first appeared on chain.
    pub number: u64,
    /// Transactions it has sent.
    pub sequence: u64,
}

#[derive(Deserialize)]
struct AccountAnswer {
    account: AccountBody,
}

#[derive(Deserialize)]
struct AccountBody {
    #[serde(deserialize_with = "text_u64")]
    account_number: u64,
    #[serde(deserialize_with = "text_u64")]
    sequence: u64,
}

/// Reads a 64-bit integer that Cosmos gateways write as a JSON string.
fn text_u64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}

/// The gateway's answer to a broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastAnswer {
    /// The result.
    pub tx_response: TxResponse,
}

/// A transaction's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxResponse {
    /// Its hash (upper-case hex).
    pub txhash: String,
    /// 0: accepted; otherwise the refusing module's error code.
    pub code: u32,
    /// Why, when refused.
    #[serde(default)]
    pub raw_log: String,
}

/// Signs and broadcasts transactions for one account.
#[derive(Debug, Clone)]
pub struct ChainClient {
    http: reqwest::Client,
    config: ChainConfig,
    account: Account,
}

impl ChainClient {
    /// A client acting for `account`.
    pub fn new(config: ChainConfig, account: Account) -> Result<ChainClient> {
        tx::eth_chain_id(&config.chain_id)?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| GreenfieldError::Config(format!("http client: {e}")))?;
        Ok(ChainClient { http, config, account })
    }

    /// The account it acts for.
    pub fn account(&self) -> &Account {
        &self.account
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.config.endpoint.join(path).map_err(|e| GreenfieldError::Config(format!("{path}: {e}")))
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        object: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let transport = |source| GreenfieldError::Transport { operation, object: object.to_string(), source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let message = String::from_utf8_lossy(&body).into_owned();
            return Err(GreenfieldError::Refused {
                operation,
                object: object.to_string(),
                status: status.as_u16(),
                code: status.canonical_reason().unwrap_or("error").to_string(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| GreenfieldError::Answer {
            operation,
            object: object.to_string(),
            reason: e.to_string(),
        })
    }

    /// The account's number and next sequence, as the chain has them now.
    pub async fn account_state(&self) -> Result<AccountState> {
        let address = self.account.address().to_string();
        let url = self.url(&format!("cosmos/auth/v1beta1/accounts/{address}"))?;
        let answer: AccountAnswer = self.answer("account", &address, self.http.get(url)).await?;
        Ok(AccountState { number: answer.account.account_number, sequence: answer.account.sequence })
    }

    /// The tags the chain holds for `bucket/object`, `None` when there is no such object.
    pub async fn object_tags(&self, bucket: &str, object: &str) -> Result<Option<Vec<(String, String)>>> {
        #[derive(Deserialize)]
        struct Answer {
            object_info: Info,
        }
        #[derive(Deserialize)]
        struct Info {
            #[serde(default)]
            tags: Option<Tags>,
        }
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Vec<Pair>,
        }
        #[derive(Deserialize)]
        struct Pair {
            key: String,
            value: String,
        }
        let name = format!("{bucket}/{object}");
        let path = format!("greenfield/storage/head_object/{bucket}/{}", crate::auth::encode_path(object));
        match self.answer::<Answer>("head_object", &name, self.http.get(self.url(&path)?)).await {
            Err(GreenfieldError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
            Ok(answer) => Ok(Some(
                answer
                    .object_info
                    .tags
                    .map(|t| t.tags)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| (p.key, p.value))
                    .collect(),
            )),
        }
    }

    /// Signs a transaction of `msgs` and broadcasts it; its hash once the chain accepted it.
    pub async fn submit(&self, msgs: &[&dyn Msg], memo: &str) -> Result<String> {
        use base64::Engine as _;
        let state = self.account_state().await?;
        let gas_limit = self.config.gas_per_message * msgs.len() as u64;
        let params = TxParams {
            chain_id: self.config.chain_id.clone(),
            account_number: state.number,
            sequence: state.sequence,
            fee: vec![Coin {
                denom: "BNB".into(),
                amount: (u128::from(gas_limit) * u128::from(self.config.gas_price)).to_string(),
            }],
            gas_limit,
            memo: memo.to_string(),
            timeout_height: 0,
        };
        let signed = tx::sign(&params, &self.account, msgs)?;
        let body = json!({
            "tx_bytes": base64::engine::general_purpose::STANDARD.encode(&signed.bytes),
            "mode": "BROADCAST_MODE_SYNC",
        });
        let url = self.url("cosmos/tx/v1beta1/txs")?;
        let answer: BroadcastAnswer = self.answer("broadcast", &signed.hash, self.http.post(url).json(&body)).await?;
        let response = answer.tx_response;
        if response.code != 0 {
            return Err(GreenfieldError::TxRefused {
                txhash: response.txhash,
                code: response.code,
                log: response.raw_log,
            });
        }
        Ok(response.txhash)
    }
}
