package api

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// docLimitMetrics count the document writes refused by a size cap or a
// quota on this node (the node that answered the client, once per
// request; apply refuses them on every node).
type docLimitMetrics struct {
	textBytes, docsPerUser, membersPerDoc, linksPerDoc *metrics.Counter
	namedPerDoc, namedBytesPerUser                     *metrics.Counter
}

func newDocLimitMetrics(set *metrics.Set) docLimitMetrics {
	return docLimitMetrics{
		textBytes:         set.NewCounter(`troupe_doc_limit_refusals_total{limit="text_bytes"}`),
		docsPerUser:       set.NewCounter(`troupe_doc_limit_refusals_total{limit="documents_per_user"}`),
		membersPerDoc:     set.NewCounter(`troupe_doc_limit_refusals_total{limit="members_per_document"}`),
		linksPerDoc:       set.NewCounter(`troupe_doc_limit_refusals_total{limit="links_per_document"}`),
		namedPerDoc:       set.NewCounter(`troupe_doc_limit_refusals_total{limit="named_versions_per_document"}`),
		namedBytesPerUser: set.NewCounter(`troupe_doc_limit_refusals_total{limit="named_version_bytes_per_user"}`),
	}
}

// count counts err if a document limit refused the write.
func (m docLimitMetrics) count(err *storage.Error) {
	switch {
	case err == nil:
	case err.Kind == storage.KindPayloadTooLarge:
		m.textBytes.Inc()
	case err.Kind == storage.KindQuotaExceeded && err.Field == "members":
		m.membersPerDoc.Inc()
	case err.Kind == storage.KindQuotaExceeded && err.Field == "links":
		m.linksPerDoc.Inc()
	case err.Kind == storage.KindQuotaExceeded && err.Field == "named_versions":
		m.namedPerDoc.Inc()
	case err.Kind == storage.KindQuotaExceeded && err.Field == "named_version_bytes":
		m.namedBytesPerUser.Inc()
	case err.Kind == storage.KindQuotaExceeded:
		m.docsPerUser.Inc()
	}
}
