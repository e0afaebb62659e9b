//! One delivery made and sent now, outside the delivery loop: what `notify test` and `notify
//! recover` send. The body is made by one function, [`payload`], for every format, so that a
//! format's envelope is made in one place for both commands.

use std::time::Duration;

use mailtrack::config::notify::HttpReceiver;
use mailtrack::notify::http::{Answer, Attempt, Verdict, WebhookClient};
use mailtrack::notify::redis_log::Delivery;
use mailtrack::notify::worker::{payload, Format};
use mailtrack::Config;

use super::policy;
use super::sns::format_of;

/// The waits between the immediate tries of one batch: a receiver that drops one request
/// (a restart, a full pool) gets two more chances within a few seconds, while the operator
/// waits at the terminal; the delivery loop's schedule is for hours, not for this.
pub(super) const RETRY_WAITS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// Sends deliveries to one HTTP receiver, signed with its secrets, under its timeout and
/// address policy.
pub(super) struct Sender {
    client: WebhookClient,
    receiver: HttpReceiver,
    /// What the bodies are made as: the same function the delivery loop uses
    /// ([`payload`]), so an SNS endpoint gets its envelopes here too.
    format: Format,
}

impl Sender {
    /// A sender to `receiver`, endpoint `name` of `config`. An SNS endpoint's envelopes go
    /// whether or not its subscription is confirmed: the operator asked for them.
    pub(super) fn new(
        config: &Config,
        name: &str,
        receiver: &HttpReceiver,
    ) -> std::io::Result<Sender> {
        let client = WebhookClient::new(receiver.timeout, policy(receiver.allow_private))?;
        Ok(Sender {
            client,
            receiver: receiver.clone(),
            format: format_of(config, name, receiver),
        })
    }

    /// One attempt of `delivery`.
    pub(super) async fn send(&self, delivery: &Delivery) -> Answer {
        let (body, headers) = payload(&self.format, delivery);
        self.client
            .send(Attempt {
                url: &self.receiver.url,
                id: &delivery.id,
                body,
                secrets: &self.receiver.secrets,
                headers: &headers,
            })
            .await
    }

    /// Up to 1 + [`RETRY_WAITS`] attempts of `delivery`, until one is delivered; the last
    /// answer.
    pub(super) async fn send_with_retries(&self, delivery: &Delivery) -> Answer {
        let mut answer = self.send(delivery).await;
        for wait in RETRY_WAITS {
            if answer.verdict == Verdict::Delivered {
                break;
            }
            tokio::time::sleep(wait).await;
            answer = self.send(delivery).await;
        }
        answer
    }
}
