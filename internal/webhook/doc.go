// Package webhook delivers alert notifications to user webhooks the way
// Atlas does: an HTTP POST of a JSON body, signed with X-MMS-Signature when
// a webhook secret is configured, retried in the background with capped
// exponential backoff and full jitter.
package webhook
