package webhook

import (
	"errors"
	"fmt"
	"net/url"
)

// redactURL renders only scheme and host. Webhook URLs routinely embed
// credentials in the query, the userinfo or the path (chat-style
// /services/<token> hooks), and logs and errors outlive the secret's
// rotation; the delivery ID identifies the hook well enough.
func redactURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host
}

// redactErr strips the full URL that net/http puts in *url.Error messages,
// keeping the cause (and errors.Is on it) intact.
func redactErr(err error, u *url.URL) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, redactURL(u), ue.Err)
	}
	return err
}
