module secretstage.local/pause

go 1.22
